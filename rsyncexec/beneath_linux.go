package rsyncexec

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/confine"
)

// beneath resolves relative paths below one root directory without following symlinks and
// without leaving the root, keeping the last parent directory open (lists come in walk order:
// siblings are adjacent). Every path krsync itself reads, creates or removes below the source
// or the destination goes through it (or through confine.RemoveTree, which works on one name at a
// time), so a symlink planted in either tree can never redirect krsync outside it.
type beneath struct {
	fd        int
	parent    string
	parentFD  int   // -1 when no parent is open
	parentErr error // why parent could not be opened, when parentFD is -1
}

func openBeneath(dir string) (*beneath, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &beneath{fd: fd, parentFD: -1}, nil
}

func (b *beneath) close() {
	b.setParent("", -1)
	unix.Close(b.fd)
}

func (b *beneath) setParent(parent string, fd int) {
	if b.parentFD >= 0 && b.parentFD != b.fd {
		unix.Close(b.parentFD)
	}
	b.parent, b.parentFD, b.parentErr = parent, fd, nil
}

// dirOf opens (or reuses) the parent directory of rel and returns it with rel's last name.
func (b *beneath) dirOf(rel string) (int, string, error) {
	parent, name := path.Split(rel)
	parent = strings.TrimSuffix(parent, "/")
	if parent == b.parent && (b.parentFD >= 0 || b.parentErr != nil) {
		// A parent that could not be opened is not tried again for its next entries: in
		// a destination being filled for the first time, every entry of a new directory
		// would otherwise cost a failed openat2.
		return b.parentFD, name, b.parentErr
	}
	if parent == "" {
		b.setParent("", b.fd)
		return b.fd, name, nil
	}
	fd, err := confine.OpenDir(b.fd, parent, unix.O_PATH)
	if err != nil {
		b.setParent(parent, -1)
		b.parentErr = err
		return -1, "", err
	}
	b.setParent(parent, fd)
	return fd, name, nil
}

func (b *beneath) lstat(rel string, st *unix.Stat_t) error {
	fd, name, err := b.dirOf(rel)
	if err != nil {
		return err
	}
	return unix.Fstatat(fd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// privatize gives the regular file rel an inode of its own: a copy of its bytes in a new
// file beside it (mode 0600, this process's owner, the time of now), renamed over the name,
// so the name never goes missing and the other names keep the old inode untouched. rsync
// then finds it changed and copies it from the source with the source's attributes.
func (b *beneath) privatize(rel string) error {
	fd, name, err := b.dirOf(rel)
	if err != nil {
		return err
	}
	in, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	src := os.NewFile(uintptr(in), name)
	defer src.Close()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := ".krsync-link." + hex.EncodeToString(rnd[:])
	out, err := unix.Openat(fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	dst := os.NewFile(uintptr(out), tmp)
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(fd, tmp, fd, name)
	}
	if err != nil {
		_ = unix.Unlinkat(fd, tmp, 0)
	}
	return err
}

func (b *beneath) readlink(rel string) (string, error) {
	fd, name, err := b.dirOf(rel)
	if err != nil {
		return "", err
	}
	return readlinkAt(fd, name)
}
