package worker

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/rsyncexec"
)

// ErrSourceMismatch is wrapped by Run's error when the worker's source is not the tree the
// coordinator walked: none of the lease's SourceCheck names is in it. The error wraps
// ErrFatal too; krsync worker exits 2 with its message.
var ErrSourceMismatch = errors.New("the worker's source does not match the coordinator's")

// SourceMismatchError is ErrSourceMismatch with what was looked for, where. Its message is
// the one line a user sees.
type SourceMismatchError struct {
	Source string
	Names  []string
}

func (e *SourceMismatchError) Error() string {
	quoted := make([]string, len(e.Names))
	for i, n := range e.Names {
		quoted[i] = strconv.Quote(n)
	}
	return fmt.Sprintf("%s: none of %s is in %s (is --source/the volume mount or subPath the same as the coordinator's?)",
		ErrSourceMismatch, strings.Join(quoted, ", "), e.Source)
}

// Is lets errors.Is match both ErrSourceMismatch and ErrFatal.
func (e *SourceMismatchError) Is(target error) bool {
	return target == ErrSourceMismatch || target == ErrFatal
}

// checkSource, before the worker's first rsync, looks for the names the coordinator saw at
// the top of its source (Lease.SourceCheck) in this worker's source. Why: with the source
// mounted differently in the workers (a subPath on one side, another claim, an empty mount
// point), every listed entry is missing, rsync calls each one "vanished" and exits 23 with
// nothing copied, which would count as success. One name found is enough: the others may
// have been deleted since the walk. Names that are not plain names are not looked up.
func (w *worker) checkSource(l leaseapi.Lease) error {
	if w.sourceChecked || len(l.SourceCheck) == 0 {
		return nil
	}
	names := checkNames(l.SourceCheck)
	if len(names) == 0 {
		return nil
	}
	found := w.countNames(names)
	if found == 0 {
		return &SourceMismatchError{Source: w.cfg.Source, Names: names}
	}
	w.sourceChecked = true
	if 2*found >= len(names) {
		w.vouchedRoot = statRoot(w.cfg.Source)
	}
	return nil
}

// countNames counts the names the worker's source holds at its top.
func (w *worker) countNames(names []string) int {
	found := 0
	for _, name := range names {
		if _, err := os.Lstat(filepath.Join(w.cfg.Source, name)); err == nil {
			found++
		}
	}
	return found
}

// rootID identifies a directory: its device and inode.
type rootID struct{ dev, ino uint64 }

// statRoot is dir's identity, zero when it cannot be read.
func statRoot(dir string) rootID {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return rootID{}
	}
	return rootID{dev: st.Dev, ino: st.Ino}
}

// checkNames are the SourceCheck names worth looking up: plain names, nothing that could
// lead out of the source.
func checkNames(sourceCheck []string) []string {
	var names []string
	for _, name := range sourceCheck {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			continue
		}
		names = append(names, name)
	}
	return names
}

// mostlyVanished decides about a partition in which more than half of the entries (and at
// least two) vanished between the walk and rsync. rsync counts vanished files as a warning
// (exit 24, or 23 with only "no such file" complaints), which is right for a live tree; when
// most of a partition is gone there are two stories: the tree changed (a directory was
// deleted during the run, which a live volume does), or this worker looks at another tree
// than the walk did, and reporting the partition done would end the run with exit 0 and
// nothing copied. The worker tells them apart by looking again for the names the coordinator
// saw at the top of its source (Lease.SourceCheck): when at least half of them are still
// there, the source is the walked tree and the partition is done with a warning (the
// vanished entries are gone from the source, so the destination still ends equal to it);
// otherwise the worker stops with SourceMismatchError and the partition goes back unspent,
// unless the first check found at least half of them in this very directory (same device
// and inode): then the worker still looks at the tree it vouched for, and the names went
// with a live change (the top-level directory renamed or deleted during the run), not with
// a wrong mount.
// A lease without SourceCheck (a coordinator that sent none) fails the partition instead, as
// not retryable, since nothing can vouch for the source.
func (w *worker) mostlyVanished(l leaseapi.Lease, res rsyncexec.Result) error {
	entries := bytes.Count(l.List, []byte{0})
	if len(l.List) > 0 && l.List[len(l.List)-1] != 0 {
		entries++
	}
	if res.VanishedCount < 2 || 2*res.VanishedCount <= entries {
		return nil
	}
	names := checkNames(l.SourceCheck)
	if len(names) == 0 {
		return &vanishedError{vanished: res.VanishedCount, entries: entries, source: w.cfg.Source, paths: res.Vanished}
	}
	if 2*w.countNames(names) >= len(names) {
		return nil
	}
	if w.vouchedRoot != (rootID{}) && statRoot(w.cfg.Source) == w.vouchedRoot {
		return nil
	}
	return &SourceMismatchError{Source: w.cfg.Source, Names: names}
}

// vanishedError is a partition whose entries mostly vanished while nothing can vouch that the
// worker's source is the walked tree (see mostlyVanished).
type vanishedError struct {
	vanished, entries int
	source            string
	paths             []string
}

func (e *vanishedError) Error() string {
	return fmt.Sprintf("%d of %d listed entries were missing when rsync looked; the worker's source %s may not be the tree the coordinator walked", e.vanished, e.entries, e.source)
}

// checkRoots stops the worker when its source or destination path no longer leads to the
// directory it led to when the worker started: replaced by another directory or by a symlink
// to one (a volume remounted, a hostile rename). rsync and the deletions of --mirror resolve
// the roots by their paths at each run, so they would copy from, write to or delete in that
// other tree, outside what the run was given. Checked before and after each lease's work: a
// change during one rsync is caught before its partition counts as done.
func (w *worker) checkRoots() error {
	for i, dir := range []string{w.cfg.Source, w.cfg.Dest} {
		if w.roots[i] == (rootID{}) || statRoot(dir) == w.roots[i] {
			continue
		}
		what := [2]string{"source", "destination"}[i]
		return fatalf("the %s %s is no longer the directory it was when this worker started (replaced, or a symlink put in its place, during the run): stopping, nothing more is read or written there", what, dir)
	}
	return nil
}
