package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// TempDirPrefix starts the name of the run's directory for rsync's temporary files, at the
// top of the destination (Lease.TempDir).
const TempDirPrefix = ".krsync-tmp-"

// TempDirName is the run's temporary directory, relative to the destination root: the same
// for every run of one identity, so that a rerun of the same command finds and removes what
// a killed run left there.
func TempDirName(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return TempDirPrefix + hex.EncodeToString(sum[:6])
}

// checkOwnNames refuses a source that holds a name krsync writes in the destination: the
// run's temporary directory at the top, or the state directory when it lies in the
// destination. rsync would copy the source's entry onto krsync's own (the live journal
// overwritten, then deleted at the end), so the destination could not equal the source.
// The source may still gain such a name during the run; that is not checked again.
func checkOwnNames(source, dest, stateDir, tempDir string) error {
	// The run's temporary directories are tempDir and tempDir.LABEL-RANDOM (one per rsync
	// run, see rsyncexec): the end of the run removes them all by that name.
	names, err := topNames(source)
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == tempDir || strings.HasPrefix(name, tempDir+".") {
			return fmt.Errorf("the source %s holds %s, the name of a temporary directory krsync makes in the destination: rename it, or copy its parent", source, name)
		}
	}
	if stateDir == "" || dest == "" {
		return nil
	}
	rel, ok := below(stateDir, dest)
	if !ok {
		return nil
	}
	if rel == "." {
		return fmt.Errorf("--state-dir %s is the destination itself: choose a directory outside the destination, or a subdirectory of it that the source does not hold", stateDir)
	}
	// The state directory clashes when the source holds its path, or a non-directory on
	// the way to it (rsync would replace the state directory, or fail on it).
	parts := strings.Split(rel, string(filepath.Separator))
	for i := range parts {
		prefix := filepath.Join(parts[:i+1]...)
		fi, err := os.Lstat(filepath.Join(source, prefix))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("--state-dir %s: check the source for %s: %w", stateDir, prefix, err)
		}
		if i == len(parts)-1 || !fi.IsDir() {
			return fmt.Errorf("--state-dir %s lies in the destination and the source holds %s too: it would be copied over the journal; choose a --state-dir outside the destination or under another name", stateDir, prefix)
		}
	}
	return nil
}

// below returns path relative to dir when path lies under dir (by name, both made absolute
// and clean), and whether it does.
func below(path, dir string) (string, bool) {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return "", false
	}
	rel, err := filepath.Rel(d, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return rel, true
}

// maxSourceCheck is how many top-level names a lease carries for the worker's source check.
const maxSourceCheck = 8

// pickSourceCheck returns up to maxSourceCheck names at the top of the source for
// Lease.SourceCheck: directories first, then other entries, each group sorted, so that the
// same tree always gives the same names. It skips krsync's own names and names JSON cannot
// carry unchanged (not UTF-8).
func pickSourceCheck(source, stateDir, tempDir string) ([]string, error) {
	entries, err := os.ReadDir(source)
	if err != nil {
		return nil, fmt.Errorf("source %s: read its top level: %w", source, err)
	}
	own := func(name string) bool {
		return name == tempDir || strings.HasPrefix(name, TempDirPrefix) ||
			(stateDir != "" && name == filepath.Base(stateDir))
	}
	var dirs, others []string
	for _, e := range entries { // os.ReadDir sorts by name
		name := e.Name()
		if own(name) || !utf8.ValidString(name) {
			continue
		}
		if e.IsDir() {
			dirs = append(dirs, name)
		} else {
			others = append(others, name)
		}
	}
	picked := slices.Concat(dirs, others)
	return picked[:min(len(picked), maxSourceCheck)], nil
}

// topNames lists the names at the top of dir.
func topNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("source %s: list it: %w", dir, err)
	}
	return names, nil
}
