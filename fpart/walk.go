package fpart

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Handler receives the walk's results, from Walk's own goroutine, in order. Nil funcs are
// skipped. An error returned by Partition or Dir stops the walk and is returned by Walk.
type Handler struct {
	// Partition receives each closed partition: while walking in live mode (-L), after
	// the walk otherwise (-n, and -f/-s without -L, as fpart).
	Partition func(Partition) error
	// Dir receives every directory walked and not excluded, the root as ".", parents
	// before children; also unreadable directories and mount points not crossed (-b).
	Dir func(rel string) error
	// Error receives non-fatal walk errors: unreadable directories, entries lstat fails on.
	Error func(rel string, err error)
	// Compare, when set, lets the walk leave out what a destination already holds unchanged.
	// It is asked once for each directory read (rel to the root of index root), from the
	// read-ahead goroutines, concurrently, for a SameFunc for the directory's regular files
	// and symlinks, and a done func called once they are compared; a nil SameFunc compares
	// nothing there.
	Compare func(root int, rel string) (same SameFunc, done func())
	// Unchanged receives, in walk order, each entry left out because its SameFunc said so,
	// with its size: it goes in no partition (Summary.Unchanged counts it). Only entries that
	// would have gone in a partition are compared.
	Unchanged func(rel string, size int64)
}

// SameFunc says whether the destination already holds the entry name of a directory the
// walk opened as dirFD, whose lstat is st. It may be called concurrently.
type SameFunc func(dirFD int, name string, st *unix.Stat_t) bool

// Summary counts what a walk found and handed out.
type Summary struct {
	Partitions int
	Entries    int64 // entries in partitions
	Bytes      int64 // their sizes
	Dirs       int64 // Handler.Dir calls
	Errors     int64 // Handler.Error calls
	// Unchanged entries (Handler.Compare) and their sizes: in no partition.
	Unchanged, UnchangedBytes int64
}

// ErrNotDir is returned when the root is not a directory.
var ErrNotDir = errors.New("not a directory")

// Walk walks root like fpart(1) with fts(3) (pre-order, each directory in readdir order,
// symlinks never followed) and hands partitions, directories and errors to h.
// Directories are read ahead concurrently (bounded), but the result depends only on the
// tree and opts. Every path of one inode with nlink > 1 lands in the same partition: a
// group is packed as soon as all its links are seen, and groups with links outside the
// walk are packed at the end, in the last partitions. A group closes the current
// partition first when it would push it over -f; a group bigger than -f is a partition
// of its own, over the limit.
func Walk(ctx context.Context, root string, opts Options, h Handler) (Summary, error) {
	return WalkRoots(ctx, []string{root}, opts, h)
}

// WalkRoots is Walk over several roots in turn, partitioned together as fpart partitions
// several DIR arguments; Entry.Root tells which root an entry's path is relative to.
func WalkRoots(ctx context.Context, roots []string, opts Options, h Handler) (Summary, error) {
	if err := opts.Validate(); err != nil {
		return Summary{}, err
	}
	if len(roots) == 0 {
		return Summary{}, usageErr("no source directory given")
	}
	w := &walker{ctx: ctx, opts: opts, filter: newFilter(opts), h: h, links: map[inodeKey]*linkGroup{}, buffers: newDirentBuffers()}
	for _, root := range roots {
		root = CleanRoot(root)
		var st unix.Stat_t
		if err := unix.Stat(root, &st); err != nil {
			return Summary{}, fmt.Errorf("source: %w", &os.PathError{Op: "stat", Path: root, Err: err})
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return Summary{}, fmt.Errorf("source %s: %w", root, ErrNotDir)
		}
		w.roots = append(w.roots, rootInfo{path: root, dev: st.Dev})
	}
	w.pack = newPacker(opts, w.emitPartition)
	readers := opts.Readers
	if readers == 0 {
		// Directories read at once: on network storage each read and lstat is a round trip,
		// and 16 outstanding (rather than 4) cut an unchanged re-sync behind slowfs from 2.8 s to
		// 1.0 s; on local disk the walk is no slower (goroutines blocked in the kernel).
		readers = max(16, 2*runtime.GOMAXPROCS(0))
		if h.Compare != nil {
			// Each entry is a lookup on both sides, and a FUSE or network file system may
			// serve one directory's lookups one at a time: more directories in flight is
			// what pays (slowfs, 20,000 files, unchanged re-sync: 7.7 s with 16, 3.8 s with
			// 32, 1.4 s with 64).
			readers *= 4
		}
	}
	w.prefetch = newPrefetcher(readers, 4*readers, w.readJob)
	defer w.prefetch.stop()
	if !opts.Live {
		w.prefetch.rampUp() // nothing is handed out before the end: full speed at once
	}

	for i, root := range w.roots {
		self := dirEntry{name: path.Base(strings.TrimRight(root.path, "/")), mode: unix.S_IFDIR, dev: root.dev}
		if self.name == "" || self.name == "." {
			self.name = root.path
		}
		var parent dirState
		if err := w.visitDir(newDirJob(i, root.path, "."), &self, &parent); err != nil {
			return w.summary, err
		}
	}
	if err := w.flushLinks(); err != nil {
		return w.summary, err
	}
	if err := w.pack.finish(); err != nil {
		return w.summary, err
	}
	return w.summary, nil
}

// rootInfo is one root of the walk.
type rootInfo struct {
	path string
	dev  uint64
}

// inodeKey identifies an inode for hard-link grouping.
type inodeKey struct{ dev, ino uint64 }

// linkGroup collects the paths of one inode with nlink > 1 until all are seen.
type linkGroup struct {
	entries []Entry
	bytes   int64
	nlink   uint64
	packed  bool
}

// dirState is fpart's per-directory bookkeeping (curdir_empty, curdir_dirsfound,
// curdir_size in file_entry.c): after any subdirectory, fpart resets it to "not empty,
// has subdirectories, size 0".
type dirState struct {
	empty     bool
	dirsFound bool
	size      int64
}

func (s *dirState) afterSubdir() { *s = dirState{empty: false, dirsFound: true} }

type walker struct {
	ctx      context.Context
	opts     Options
	filter   filter
	h        Handler
	pack     packer
	prefetch *prefetcher
	buffers  *sync.Pool // getdents buffers
	links    map[inodeKey]*linkGroup
	order    []*linkGroup // incomplete groups in the order first seen
	roots    []rootInfo
	summary  Summary
}

// CleanRoot leaves at most one trailing '/' on root, as fpart does with its arguments
// (cleanslash_path); WalkRoots and FullPath use roots cleaned this way.
func CleanRoot(root string) string {
	for len(root) > 1 && strings.HasSuffix(root, "//") {
		root = root[:len(root)-1]
	}
	return root
}

// FullPath is the path as fpart prints it: the root as given, then the relative path.
func FullPath(root, rel string) string {
	if rel == "." {
		return root
	}
	if strings.HasSuffix(root, "/") {
		return root + rel
	}
	return root + "/" + rel
}

func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// readJob reads one directory and decides which subdirectories the walk will enter, so
// that their reads can start at once.
func (w *walker) readJob(job *dirJob) listing {
	root := job.root
	var same SameFunc
	if w.h.Compare != nil && !w.opts.DirsOnly && !w.opts.LeafDirs {
		var done func()
		same, done = w.h.Compare(root, job.rel)
		if done != nil {
			defer done()
		}
	}
	res := readDir(job.path, job.rel == ".", w.opts.OneFileSystem, w.buffers, same)
	if w.opts.DirsOnly || w.opts.LeafDirs {
		// fpart sorts directories first in these modes (fts_dirsfirst), so a directory's
		// size and leaf status are known when its files are seen.
		dirsFirst(res.entries)
	}
	res.sub = make([]*dirJob, len(res.entries))
	var push []*dirJob
	for k := range res.entries {
		e := &res.entries[k]
		if e.err != nil || !e.isDir() {
			continue
		}
		rel := joinRel(job.rel, e.name)
		if w.excluded(root, e.name, rel) || (w.opts.OneFileSystem && e.dev != w.roots[root].dev) {
			continue
		}
		child := newDirJob(root, joinPath(job.path, e.name), rel)
		res.sub[k] = child
		push = append(push, child)
	}
	// Reverse, so the first subdirectory is on top of the stack.
	for i, j := 0, len(push)-1; i < j; i, j = i+1, j-1 {
		push[i], push[j] = push[j], push[i]
	}
	w.prefetch.push(push)
	return res
}

func joinPath(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

func dirsFirst(entries []dirEntry) {
	var dirs, others []dirEntry
	for _, e := range entries {
		if e.err == nil && e.isDir() {
			dirs = append(dirs, e)
		} else {
			others = append(others, e)
		}
	}
	copy(entries, append(dirs, others...))
}

func (w *walker) excluded(root int, name, rel string) bool {
	if !w.filter.hasExclude {
		return false
	}
	full := ""
	if w.filter.hasPathPattern {
		full = FullPath(w.roots[root].path, rel)
	}
	return w.filter.excluded(name, full, rel)
}

// included applies -y/-Y only: callers have already applied -x/-X.
func (w *walker) included(root int, name, rel string) bool {
	if !w.filter.hasInclude {
		return true
	}
	full := ""
	if w.filter.hasPathPattern {
		full = FullPath(w.roots[root].path, rel)
	}
	return w.filter.included(name, full, rel)
}

func (w *walker) reportError(rel string, err error) {
	w.summary.Errors++
	if w.h.Error != nil {
		w.h.Error(rel, err)
	}
}

// visitDir walks one directory that is not excluded (fts's FTS_D ... FTS_DP); parent is
// the state of the directory holding it.
func (w *walker) visitDir(job *dirJob, self *dirEntry, parent *dirState) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	rel, root := job.rel, job.root
	if rel == "." && w.excluded(root, self.name, rel) {
		return nil // fpart applies -x to the root too
	}
	w.summary.Dirs++
	if w.summary.Dirs == 64 {
		w.prefetch.rampUp() // big partitions (-s) should not wait for full speed
	}
	if w.h.Dir != nil {
		if err := w.h.Dir(rel); err != nil {
			return err
		}
	}
	state := dirState{empty: true}
	mountPoint := rel != "." && w.opts.OneFileSystem && self.dev != w.roots[root].dev
	if !mountPoint {
		res, err := w.prefetch.take(w.ctx, job)
		if err != nil {
			return err
		}
		if res.err != nil {
			w.reportError(rel, fmt.Errorf("%s: %w", FullPath(w.roots[root].path, rel), res.err))
			if len(res.entries) == 0 {
				// fts's FTS_DNR: with -zz the directory is packed as an empty one; but not
				// one deleted since its parent was read (reported as such above): it is
				// gone, and listing it would count it vanished a second time.
				if w.opts.Dirs >= DirsUnreadable && !errors.Is(res.err, fs.ErrNotExist) {
					if err := w.closeDir(root, self, rel, &dirState{empty: true}, false); err != nil {
						return err
					}
					parent.afterSubdir()
				} else {
					parent.empty, parent.dirsFound = false, true
				}
				return nil
			}
		}
		if err := w.visitEntries(root, rel, res, &state); err != nil {
			return err
		}
		if res.err != nil && w.opts.Dirs >= DirsUnreadable {
			state.empty = true // fpart: a partly read directory is packed as an empty one with -zz
		}
	}
	if err := w.closeDir(root, self, rel, &state, mountPoint); err != nil {
		return err
	}
	parent.afterSubdir()
	return nil
}

// visitEntries handles a directory's entries in order, descending into subdirectories.
func (w *walker) visitEntries(root int, dirRel string, res listing, state *dirState) error {
	for k := range res.entries {
		if k%4096 == 4095 {
			if err := w.ctx.Err(); err != nil {
				return err // a huge directory is checked as it goes
			}
		}
		e := &res.entries[k]
		rel := joinRel(dirRel, e.name)
		if e.err != nil {
			// fts's FTS_NS: reported, makes the directory non-empty, not packed.
			w.reportError(rel, fmt.Errorf("%s: %w", FullPath(w.roots[root].path, rel), e.err))
			state.empty = false
			continue
		}
		if e.isDir() {
			if res.sub[k] == nil {
				state.afterSubdir() // excluded (or another file system's, read by nobody)
				if w.opts.OneFileSystem && e.dev != w.roots[root].dev && !w.excluded(root, e.name, rel) {
					if err := w.visitDir(newDirJob(root, "", rel), e, state); err != nil {
						return err
					}
				}
				continue
			}
			if err := w.visitDir(res.sub[k], e, state); err != nil {
				return err
			}
			res.entries[k] = dirEntry{}
			continue
		}
		if w.excluded(root, e.name, rel) {
			continue
		}
		state.empty = false
		state.size += e.size
		if !w.included(root, e.name, rel) {
			continue
		}
		if w.opts.DirsOnly || (w.opts.LeafDirs && !state.dirsFound) {
			continue // the directory is packed instead of its files
		}
		if e.unchanged {
			// A re-sync may hand out no partition for long: nothing waits for a first one, so
			// the read-ahead goes to full speed at once.
			w.prefetch.rampUp()
			w.summary.Unchanged++
			w.summary.UnchangedBytes += e.size
			if w.h.Unchanged != nil {
				w.h.Unchanged(rel, e.size)
			}
			if err := w.pack.skip(1); err != nil {
				return err
			}
			continue
		}
		if err := w.addEntry(Entry{Path: rel, Size: e.size, Root: root}, e); err != nil {
			return err
		}
	}
	return nil
}

// closeDir is fts's FTS_DP in fpart: it packs the directory itself when the mode says so.
func (w *walker) closeDir(root int, self *dirEntry, rel string, state *dirState, mountPoint bool) error {
	addMe := w.opts.DirsOnly || (w.opts.LeafDirs && !state.dirsFound) ||
		(w.opts.Dirs >= DirsEmpty && state.empty)
	if !addMe && w.opts.Dirs >= DirsAll {
		addMe, state.empty = true, true
	}
	if !addMe || !w.included(root, self.name, rel) || (rel != "." && w.excluded(root, self.name, rel)) {
		return nil
	}
	size := state.size
	if mountPoint || state.empty || !(w.opts.DirsOnly || w.opts.LeafDirs) {
		size = 0
	}
	return w.addEntry(Entry{Path: rel, Size: size, Dir: true, Root: root}, nil)
}

// addEntry packs one entry, holding back hard links until their group is complete.
func (w *walker) addEntry(e Entry, st *dirEntry) error {
	if st == nil || e.Dir || st.nlink <= 1 {
		return w.pack.add([]Entry{e}, e.Size)
	}
	key := inodeKey{st.dev, st.ino}
	g := w.links[key]
	if g == nil {
		g = &linkGroup{nlink: st.nlink}
		w.links[key] = g
		w.order = append(w.order, g)
	}
	g.entries = append(g.entries, e)
	g.bytes += e.Size
	if uint64(len(g.entries)) < g.nlink {
		return nil
	}
	delete(w.links, key)
	g.packed = true
	if len(w.order) > 64 && len(w.links) < len(w.order)/2 {
		w.compactLinks()
	}
	return w.pack.add(g.entries, g.bytes)
}

// compactLinks drops packed groups from the order list.
func (w *walker) compactLinks() {
	kept := w.order[:0]
	for _, g := range w.order {
		if !g.packed {
			kept = append(kept, g)
		}
	}
	clear(w.order[len(kept):])
	w.order = kept
}

// flushLinks packs the groups whose other links are outside the walk (or excluded).
func (w *walker) flushLinks() error {
	for _, g := range w.order {
		if g.packed {
			continue
		}
		g.packed = true
		if err := w.pack.add(g.entries, g.bytes); err != nil {
			return err
		}
	}
	w.order, w.links = nil, nil
	return nil
}

func (w *walker) emitPartition(p Partition) error {
	w.prefetch.rampUp()
	w.summary.Partitions++
	w.summary.Entries += int64(len(p.Entries))
	w.summary.Bytes += p.Bytes
	if w.h.Partition == nil {
		return nil
	}
	return w.h.Partition(p)
}
