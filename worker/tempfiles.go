package worker

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/krsync/krsync/leaseapi"
)

// rsync writes each file to a temporary ".NAME.XXXXXX" beside it and renames it at the end
// (rsync(1), --temp-dir; receiver.c get_tmpname, which shortens NAME when the whole would
// be too long). A stopped or killed rsync does not always remove it: SIGTERM reaches its
// processes in some order and the receiver can die before its cleanup. Left alone, such a
// file would stay in the destination forever, since later runs never look at it.

// tempSuffixLen is the length of mkstemp's random suffix.
const tempSuffixLen = 6

// bigDirSize is the size of a directory inode beyond which the tidying after a successful
// attempt skips it: listing a directory of millions of names for every partition of it would
// cost more than the copy (ext4 needs about 8 MiB for 200,000 names). After a stopped or
// failed attempt, when leftovers are likely, every directory is looked at.
const bigDirSize = 8 << 20

// removeTempFiles removes rsync's temporary files for the entries of list from dest: names
// ".BASE.XXXXXX" (or a shortened BASE) beside a listed entry that do not exist in source.
// Directories whose inode is larger than maxDirSize (when positive) are skipped. It returns
// how many it removed. Errors are ignored: this is tidying, not copying.
func removeTempFiles(source, dest string, list []byte, maxDirSize int64) int {
	bases := map[string]map[string]bool{} // directory -> base names listed in it
	for _, p := range leaseapi.SplitList(list) {
		p = path.Clean(p)
		if p == "." || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/") {
			continue
		}
		dir, base := path.Split(p)
		dir = path.Clean(dir)
		if bases[dir] == nil {
			bases[dir] = map[string]bool{}
		}
		bases[dir][base] = true
	}
	removed := 0
	for dir, names := range bases {
		if maxDirSize > 0 {
			if fi, err := os.Stat(filepath.Join(dest, filepath.FromSlash(dir))); err != nil || fi.Size() > maxDirSize {
				continue
			}
		}
		entries, err := os.ReadDir(filepath.Join(dest, filepath.FromSlash(dir)))
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if !e.Type().IsRegular() || !isTempFor(name, names) {
				continue
			}
			rel := filepath.Join(filepath.FromSlash(dir), name)
			if _, err := os.Lstat(filepath.Join(source, rel)); !errors.Is(err, fs.ErrNotExist) {
				continue // the source has this very name: it is data, not rsync's leftover
			}
			if os.Remove(filepath.Join(dest, rel)) == nil {
				removed++
			}
		}
	}
	return removed
}

// isTempFor reports whether name looks like rsync's temporary file for one of bases.
func isTempFor(name string, bases map[string]bool) bool {
	n := len(name)
	if n < 1+1+1+tempSuffixLen || name[0] != '.' || name[n-tempSuffixLen-1] != '.' {
		return false
	}
	for _, c := range name[n-tempSuffixLen:] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	middle := name[1 : n-tempSuffixLen-1]
	if bases[middle] {
		return true
	}
	// A long NAME is shortened, so the middle is then only a prefix of it.
	if n < 200 {
		return false
	}
	for base := range bases {
		if strings.HasPrefix(base, middle) {
			return true
		}
	}
	return false
}
