package rsyncexec

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/confine"
)

// ErrTempDir is wrapped by the errors about krsync's temporary directory in the destination
// (Job.TempDir): it is a symlink or not a directory (krsync never follows or replaces one),
// or it could not be created or removed.
var ErrTempDir = errors.New("krsync's temporary directory")

// tempDirMode keeps rsync's half-written files private: they have the mode 0600 anyway, but
// their names would tell what is being copied.
const tempDirMode = 0o700

// checkTempName accepts one plain name: the directory sits directly below the destination
// root, so that opening it cannot pass through anything but the root.
func checkTempName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: %q is not a plain name below the destination", ErrTempDir, name)
	}
	return nil
}

// makeTempDir creates DEST/name (mode 0700) when it is missing, without following symlinks:
// when DEST/name is a symlink or not a directory, it is refused and left alone.
//
// Every rsync of the run shares it: rsync names each temporary file NAME.XXXXXX with
// mkstemp(3), so no two collide, and a stopped rsync (SIGTERM) removes its own (rsync's
// cleanup handler); only an rsync killed outright leaves one, which the removal of the
// whole directory at the end of the run takes. One level below the destination root, no
// more: rsync 3.5 walks --temp-dir one component at a time for every operation on a
// temporary file (syscall.c, secure_mkstemp and friends), so each level costs about ten
// system calls per file copied.
func makeTempDir(dest, name string) error {
	if err := checkTempName(name); err != nil {
		return err
	}
	root, err := unix.Open(dest, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: destination %s: %w", ErrTempDir, dest, err)
	}
	defer unix.Close(root)
	full := filepath.Join(dest, name)
	if err := unix.Mkdirat(root, name, tempDirMode); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%w: create %s: %w", ErrTempDir, full, err)
	}
	dir, err := confine.OpenDir(root, name, unix.O_PATH)
	if err != nil {
		return tempDirError(full, err)
	}
	unix.Close(dir)
	return nil
}

// RemoveTempDir removes the directory name directly below dest whole (the run's Job.TempDir,
// when every partition is settled), without following symlinks: a symlink or a file of that
// name is refused with an error wrapping ErrTempDir and left alone, since krsync did not
// create it. A missing directory is fine.
func RemoveTempDir(dest, name string) error {
	if err := checkTempName(name); err != nil {
		return err
	}
	root, err := unix.Open(dest, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: destination %s: %w", ErrTempDir, dest, err)
	}
	defer unix.Close(root)
	full := filepath.Join(dest, name)
	// Looked at first only to name the problem well (open(O_NOFOLLOW|O_DIRECTORY) says
	// ENOTDIR for a symlink); confine.RemoveTree refuses a symlink swapped in after this on its own.
	if confine.IsSymlinkAt(root, name) {
		return tempDirError(full, unix.ELOOP)
	}
	if err := confine.RemoveTree(root, name); err != nil {
		return tempDirError(full, err)
	}
	return nil
}

// tempDirError says what is wrong with the temporary directory in one line.
func tempDirError(full string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%w: %s is a symlink, not the directory krsync made; krsync does not follow it: remove it and run again", ErrTempDir, full)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%w: %s is not a directory; krsync did not make it: remove or rename it and run again", ErrTempDir, full)
	}
	return fmt.Errorf("%w: %s: %w", ErrTempDir, full, err)
}
