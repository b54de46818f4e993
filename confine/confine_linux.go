package confine

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// OpenDir opens the directory rel below dirfd (flags: unix.O_PATH for a handle to resolve
// from, unix.O_RDONLY to read it too) with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: a
// symlink anywhere on the way is ELOOP, a component that is no directory ENOTDIR, and ".."
// cannot climb out. Kernels before 5.6 lack openat2 (ENOSYS): then each component is opened
// with O_NOFOLLOW, which is as strict because rel has no ".." (the callers' lists are cleaned)
// and a symlink found that way is reported as ELOOP too.
func OpenDir(dirfd int, rel string, flags int) (int, error) {
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_DIRECTORY | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	return openDirWalk(dirfd, rel, flags)
}

// openDirWalk is OpenDir without openat2: one openat(O_NOFOLLOW) per component.
func openDirWalk(dirfd int, rel string, flags int) (int, error) {
	var parts []string
	for _, part := range strings.Split(rel, "/") {
		switch part {
		case "", ".":
		case "..":
			return -1, unix.EXDEV
		default:
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return unix.Openat(dirfd, ".", flags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	cur := dirfd
	for i, part := range parts {
		f := unix.O_PATH
		if i == len(parts)-1 {
			f = flags
		}
		fd, err := unix.Openat(cur, part, f|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) && IsSymlinkAt(cur, part) {
			err = unix.ELOOP
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

func IsSymlinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// RemoveTree removes the directory name inside dirfd and everything in it, one name at a
// time relative to directory descriptors: a symlink inside is removed as a link, never
// followed, and name itself must be a real directory (a symlink or a file there is refused
// with ELOOP or ENOTDIR and left alone). A missing name is not an error.
func RemoveTree(dirfd int, name string) error {
	// Another process may still be creating entries (an rsync receiver that outlived a
	// stop by a moment); a few rounds settle that.
	var err error
	for range 3 {
		if err = removeContents(dirfd, name); err != nil {
			break
		}
		err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// removeContents empties the directory name inside dirfd (see RemoveTree).
func removeContents(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	dir := os.NewFile(uintptr(fd), name)
	defer dir.Close()
	// Read every name before removing any: removing while reading can make getdents skip
	// entries. What rsync leaves in a temporary directory is a handful of files.
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	for _, child := range names {
		err := unix.Unlinkat(fd, child, 0)
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) { // unlink(2) of a directory
			err = RemoveTree(fd, child)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s/%s: %w", name, child, err)
		}
	}
	return nil
}
