package verify

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// entry is what fstatat(2) says about one name of a directory.
type entry struct {
	name      string
	mode      uint32 // st_mode: type and the 12 permission bits
	uid, gid  uint32
	nlink     uint64
	size      int64
	mtimeSec  int64
	mtimeNsec int64
	rdev      uint64
	dev, ino  uint64
	err       error // fstatat failed (the name vanished, or cannot be read)
}

func (e *entry) typ() uint32  { return e.mode & unix.S_IFMT }
func (e *entry) isDir() bool  { return e.typ() == unix.S_IFDIR }
func (e *entry) inode() inode { return inode{e.dev, e.ino} }

// inode identifies an inode within one machine.
type inode struct{ dev, ino uint64 }

func fromStat(name string, st *unix.Stat_t) entry {
	return entry{
		name: name, mode: st.Mode, uid: st.Uid, gid: st.Gid, nlink: uint64(st.Nlink),
		size: st.Size, mtimeSec: st.Mtim.Sec, mtimeNsec: st.Mtim.Nsec, rdev: uint64(st.Rdev),
		dev: uint64(st.Dev), ino: st.Ino,
	}
}

// noOpenat2 is set once openat2(2) turned out to be missing (Linux before 5.6).
var noOpenat2 atomic.Bool

// openBeneath opens rel below the directory root without following any symlink on the way
// or at the end. It uses openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, and falls back to
// opening one component at a time with O_NOFOLLOW when openat2 is missing or the path is
// longer than PATH_MAX.
func openBeneath(root int, rel string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	if rel == "." {
		return retryEINTR(func() (int, error) { return unix.Openat(root, ".", flags, 0) })
	}
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	attempts:
		for range 8 {
			fd, err := unix.Openat2(root, rel, &how)
			switch {
			case err == nil:
				return fd, nil
			case err == unix.EINTR || err == unix.EAGAIN: // EAGAIN: a rename raced the lookup
				continue
			case err == unix.ENOSYS:
				noOpenat2.Store(true)
				break attempts
			case err == unix.ENAMETOOLONG:
				break attempts
			default:
				return -1, err
			}
		}
	}
	return openComponents(root, rel, flags)
}

// openComponents opens rel one component at a time, each directory with O_NOFOLLOW.
func openComponents(root int, rel string, flags int) (int, error) {
	dir := root
	defer func() {
		if dir != root {
			unix.Close(dir)
		}
	}()
	parts := strings.Split(rel, "/")
	for i, part := range parts {
		if part == "" || part == "." || part == ".." {
			return -1, fmt.Errorf("bad path component %q: %w", part, unix.EINVAL)
		}
		f := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			f = flags
		}
		fd, err := retryEINTR(func() (int, error) { return unix.Openat(dir, part, f, 0) })
		if err != nil {
			return -1, err
		}
		if dir != root {
			unix.Close(dir)
		}
		dir = fd
	}
	fd := dir
	dir = root
	return fd, nil
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		fd, err := f()
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readDir lists the directory open as fd, with fstatat(AT_SYMLINK_NOFOLLOW) of every name.
// buf is getdents' buffer, reused by the caller.
func readDir(fd int, buf []byte) ([]entry, error) {
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("getdents: %w", err)
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	entries := make([]entry, len(names))
	var st unix.Stat_t
	for i, name := range names {
		err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		for err == unix.EINTR {
			err = unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			entries[i] = entry{name: name, err: fmt.Errorf("lstat: %w", err)}
			continue
		}
		entries[i] = fromStat(name, &st)
	}
	return entries, nil
}

// readlinkAt returns the target of the symlink name in the directory fd.
func readlinkAt(fd int, name string, size int64) (string, error) {
	n := max(size+1, 256)
	for {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(fd, name, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("readlink: %w", err)
		}
		if int64(got) < n {
			return string(buf[:got]), nil
		}
		n *= 2
	}
}
