package worker

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// CheckSource makes sure dir is a directory this process can list, so that a bad --source is
// one clear error before any lease is taken.
func CheckSource(dir string) error {
	if err := isDir("source", dir); err != nil {
		return err
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("source %s is not readable: %w", dir, unwrapPath(err))
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("source %s is not readable: %w", dir, unwrapPath(err))
	}
	return nil
}

// CheckDest makes sure dir is a directory this process may create entries in. It writes
// nothing: access(2) answers for permissions, read-only mounts and immutable directories.
func CheckDest(dir string) error {
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
		return fmt.Errorf("%s %s: %w", role, dir, unwrapPath(err))
	case !fi.IsDir():
		return fmt.Errorf("%s %s is not a directory", role, dir)
	}
	return nil
}

// unwrapPath drops the *fs.PathError wrapper whose path the message already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
