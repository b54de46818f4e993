package pathcheck

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Source makes sure dir is a directory this process can list, so that a bad source is one
// clear error before any partition is walked or leased.
func Source(dir string) error {
	if err := isDir("source", dir); err != nil {
		return err
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("source %s is not readable: %w", dir, UnwrapPath(err))
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("source %s is not readable: %w", dir, UnwrapPath(err))
	}
	return nil
}

// Dest makes sure dir is a directory this process may create entries in. It writes
// nothing: access(2) answers for permissions, read-only mounts and immutable directories.
func Dest(dir string) error {
	if err := isDir("destination", dir); err != nil {
		return err
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("destination %s is not writable: %w", dir, err)
	}
	return nil
}

func isDir(role, dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s does not exist", role, dir)
	case err != nil:
		return fmt.Errorf("%s %s: %w", role, dir, UnwrapPath(err))
	case !fi.IsDir():
		return fmt.Errorf("%s %s is not a directory", role, dir)
	}
	return nil
}

// UnwrapPath drops the *fs.PathError wrapper whose path the message already names.
func UnwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Overlap refuses a destination inside the source (the copy would copy itself) and a source
// inside the destination (it would be written over). Both paths must be resolved; comparing
// inodes, and where both lie in their file system (/proc/self/mountinfo), catches bind mounts
// that show one directory under two names.
func Overlap(source, dest string) error {
	switch {
	case Within(dest, source):
		return fmt.Errorf("destination %s is inside the source %s: choose a destination outside it", dest, source)
	case Within(source, dest):
		return fmt.Errorf("source %s is inside the destination %s: choose a destination outside it", source, dest)
	}
	// A bind mount (or one volume mounted twice, e.g. two subPaths of one claim) can show
	// one inside the other under unrelated paths: compare where both lie in their file system.
	src, ok1 := locate(source)
	dst, ok2 := locate(dest)
	if !ok1 || !ok2 || src.dev != dst.dev {
		return nil
	}
	switch {
	case underByName(dst.path, src.path):
		return fmt.Errorf("destination %s is inside the source %s: they are %s and %s of one file system (a bind mount, or one volume mounted twice): choose a destination outside it", dest, source, dst.path, src.path)
	case underByName(src.path, dst.path):
		return fmt.Errorf("source %s is inside the destination %s: they are %s and %s of one file system (a bind mount, or one volume mounted twice): choose a destination outside it", source, dest, src.path, dst.path)
	}
	return nil
}

// Within reports whether path is dir or lies under it, by name or by inode.
func Within(path, dir string) bool {
	if path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/") {
		return true
	}
	dirInfo, err := os.Stat(dir)
	if err != nil {
		return false
	}
	for p := path; ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && os.SameFile(fi, dirInfo) {
			return true
		}
		if p == filepath.Dir(p) {
			return false
		}
	}
}

// ResolveSource checks that dir is a source this process can list and returns its absolute
// path with symlinks resolved.
func ResolveSource(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("source %s: %w", dir, err)
	}
	if err := Source(abs); err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}
