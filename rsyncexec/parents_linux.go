package rsyncexec

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/confine"
)

// ErrSymlinkParent is wrapped by a *RefusedError: listed entries whose parent directories
// are not a chain of real directories below the source.
var ErrSymlinkParent = errors.New("a parent directory is a symlink, not a directory of the source")

// ErrPathTooLong is wrapped by a *RefusedError: listed entries whose path in the source or
// the destination is longer than rsync can handle (see dropTooLong).
var ErrPathTooLong = fmt.Errorf("the path is longer than rsync's limit of %d bytes", rsyncMaxPath-1)

// rsyncMaxPath is rsync's MAXPATHLEN (Linux's PATH_MAX): rsync cannot name a file whose
// path, with its root, takes this many bytes or more. It says "link_stat ... No such file or
// directory" of a truncated name, as if the file had vanished.
const rsyncMaxPath = 4096

// RefusedError is a run in which some listed entries were not copied, for the reason Why:
// reading them could leave the source, a parent directory on their path being a symlink
// (ErrSymlinkParent, see dropUnsafe), or rsync cannot name them (ErrPathTooLong). The
// other entries were copied; Err is the outcome of that rsync run (nil when it succeeded,
// or another *RefusedError). No retry helps: the same entries would be refused again.
type RefusedError struct {
	// Paths are the refused entries relative to the source root (at most 1000); Count counts
	// them all.
	Paths []string
	Count int
	Why   error
	// Err is the error of the rsync run over the other entries, if any.
	Err error
}

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("%d listed path(s) not copied because %v (e.g. %q)", e.Count, e.Why, firstOf(e.Paths))
	if e.Err != nil {
		msg += "; the rest: " + e.Err.Error()
	}
	return msg
}

// Unwrap lets errors.Is/As see Why and the rsync run's own error.
func (e *RefusedError) Unwrap() []error { return []error{e.Why, e.Err} }

// AllPaths are the refused paths of e and of the refusals it wraps.
func (e *RefusedError) AllPaths() []string {
	var paths []string
	for r := e; r != nil; {
		paths = append(paths, r.Paths...)
		var next *RefusedError
		if !errors.As(r.Err, &next) {
			break
		}
		r = next
	}
	return paths
}

// dropTooLong removes from a cleaned list the entries whose path below source or dest is
// too long for rsync (rsyncMaxPath), and returns them as dropUnsafe does. rsync would report
// each as vanished, and the run would end 0 without it.
func dropTooLong(source, dest string, list []byte) (kept []byte, refused []string, count int) {
	longest := max(len(source), len(dest)) + 1
	return dropEntries(list, func(rel string) bool { return longest+len(rel) >= rsyncMaxPath })
}

// dropEntries removes from a cleaned list ("./NAME" entries) those refuse says no to, and
// returns them relative, without "./" (at most maxFailedPaths; count counts all). An
// untouched list is returned as it is.
func dropEntries(list []byte, refuse func(rel string) bool) (kept []byte, refused []string, count int) {
	var b bytes.Buffer // the kept entries, from the first refusal on (until then: list itself)
	for off := 0; off < len(list); {
		i := bytes.IndexByte(list[off:], 0)
		end := off + i
		if i < 0 {
			end = len(list)
		}
		entry := list[off:end]
		next := min(end+1, len(list))
		if refuse(strings.TrimPrefix(string(entry), "./")) {
			if count == 0 {
				b.Write(list[:off])
			}
			if count < maxFailedPaths {
				refused = append(refused, strings.TrimPrefix(string(entry), "./"))
			}
			count++
		} else if count > 0 {
			b.Write(entry)
			b.WriteByte(0)
		}
		off = next
	}
	if count == 0 {
		return list, nil, 0
	}
	return b.Bytes(), refused, count
}

func firstOf(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	return paths[0]
}

// dropUnsafe removes from a cleaned list ("./NAME" entries) those whose parent directories
// are not a chain of real directories below source, and returns them (relative, without
// "./"; at most maxFailedPaths, count counts all).
//
// Why: rsync's sender follows symlinks in the directories of a --files-from entry (only the
// last component is copied as a link, rsync(1) --relative and --links), so an entry
// "lnk/secret" where lnk points outside the source makes a worker, often root with
// CAP_DAC_OVERRIDE, copy a file from outside the source. Each parent is opened below the
// source with openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS; the entry itself may be a symlink
// (it is copied as one). Parents seen once are not opened again within the job.
//
// What remains: the check and rsync's own open are separate moments. Someone who can write
// the source can swap a checked parent directory for a symlink after the check and before
// rsync opens the path (milliseconds to minutes on a long partition), and rsync then follows
// it. Closing that window would need rsync's sender itself to open every path beneath its
// root without following symlinks.
//
// Errors other than a symlink on the way (a missing or unreadable parent) are left to rsync,
// which reports them as vanished or failed paths as it would without this check.
func dropUnsafe(source string, list []byte) (kept []byte, refused []string, count int) {
	root, err := unix.Open(source, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return list, nil, 0 // rsync reports an unusable source itself
	}
	defer unix.Close(root)
	symlinked := map[string]bool{} // parent -> is (under) a symlink; checked parents only
	return dropEntries(list, func(rel string) bool {
		parent := path.Dir(rel)
		bad, seen := symlinked[parent]
		if !seen && parent != "." {
			fd, err := confine.OpenDir(root, parent, unix.O_PATH)
			if err == nil {
				unix.Close(fd)
			}
			bad = errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV)
			symlinked[parent] = bad
		}
		return bad
	})
}
