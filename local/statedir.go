package local

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/pathcheck"
)

// This file is the state-directory policy of a local copy: where the journal lives (never in
// the source, which would copy it, nor in the destination, which must end equal to the
// source), and what goes when a run is over.

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

// removeState forgets a finished run, so the next run starts clean. A default state
// directory is krsync's own and goes whole; in a chosen one (own) only the journal goes (the
// coordinator removes it), and the directory too when that leaves it empty.
func removeState(stateDir string, own bool, log zerolog.Logger) {
	var err error
	if !own {
		err = os.RemoveAll(stateDir)
	} else if err = os.Remove(filepath.Join(stateDir, coordinator.JournalFile)); err == nil || errors.Is(err, fs.ErrNotExist) {
		err = nil
		_ = os.Remove(stateDir) // fails, harmlessly, when something else is in it
	}
	if err != nil {
		log.Warn().Err(err).Str("state_dir", stateDir).Msg("could not remove the state of the finished run")
	}
}
