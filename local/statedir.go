package local

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/pathcheck"
)

// This file is the state-directory policy of a local copy: where the journal lives (never in
// the source, which would copy it, nor in the destination, which must end equal to the
// source). The coordinator owns the directory itself: it creates it when missing and, after
// a run that ended, removes its journal and the directory it created (coordinator.Config.
// StateDir), so the default directory, which is always created by krsync, leaves no trace.

// chooseStateDir picks the journal's directory: the user's, else one per source and
// destination pair under the user's state directory (or the temporary directory).
func chooseStateDir(flag, source, dest string) (string, error) {
	if flag != "" {
		abs, err := filepath.Abs(flag)
		if err != nil {
			return "", fmt.Errorf("--state-dir %s: %w", flag, err)
		}
		if pathcheck.Within(resolvePrefix(abs), source) {
			return "", fmt.Errorf("--state-dir %s is inside the source %s: it would be copied; choose another", flag, source)
		}
		return abs, nil
	}
	sum := sha256.Sum256([]byte(source + "\x00" + dest))
	name := hex.EncodeToString(sum[:8])
	var bases []string
	if xdg := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(xdg) {
		bases = append(bases, filepath.Join(xdg, "krsync"))
	} else if home, err := os.UserHomeDir(); err == nil {
		bases = append(bases, filepath.Join(home, ".local", "state", "krsync"))
	}
	bases = append(bases, filepath.Join(os.TempDir(), fmt.Sprintf("krsync-state-%d", os.Getuid())))
	for _, base := range bases {
		dir := filepath.Join(base, name)
		real := resolvePrefix(dir)
		if !pathcheck.Within(real, source) && !pathcheck.Within(real, dest) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no default state directory outside %s and %s: set --state-dir", source, dest)
}

// resolvePrefix resolves the symlinks of the longest existing prefix of path.
func resolvePrefix(path string) string {
	var rest []string
	for p := path; ; p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{real}, rest...)...)
		}
		if p == filepath.Dir(p) {
			return path
		}
		rest = append([]string{filepath.Base(p)}, rest...)
	}
}

// checkStateDir says, before the run, whether the coordinator can use or create dir: the
// nearest directory on its path that exists must be a writable directory.
func checkStateDir(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case (errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)) && p != filepath.Dir(p):
			continue // a file on the way is named below
		case err != nil:
			return fmt.Errorf("state directory %s: %w (choose another with --state-dir)", dir, err)
		case !fi.IsDir():
			return fmt.Errorf("state directory %s: %s is not a directory (choose another with --state-dir)", dir, p)
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("state directory %s: %s is not writable: %w (choose another with --state-dir)", dir, p, err)
		}
		return nil
	}
}
