package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// DefaultWorkers is the parallelism when Config.Workers is not set: directory reads are
// mostly waiting for the kernel, so a few more than the cores keep both trees busy.
const DefaultWorkers = 4

// Config says what to compare.
type Config struct {
	// Source and Dest are the roots of the two trees; each may itself be a symlink to a
	// directory (like rsync's SRC/), nothing below them is followed.
	Source, Dest string
	// Workers bounds the directories read and files compared at once (DefaultWorkers when 0).
	Workers int
	// Checksum also compares the contents of regular files whose sizes are equal.
	Checksum bool
	// Exclude holds fpart -x patterns: matching entries, and everything below them, are
	// neither compared nor reported extraneous.
	Exclude []string
	// ExcludeRoot is the source root as the walk that chose the entries named it: a pattern
	// with '/' is matched against it followed by the relative path. Empty: Source.
	ExcludeRoot string
	// Report receives every difference, from one goroutine at a time, in no particular
	// order across directories. An error from it stops the run and is returned.
	Report func(Difference) error
}

// Summary counts what Run compared and found.
type Summary struct {
	Entries      int64          // source entries looked at, the root included (not below a missing directory)
	Dirs         int64          // directories read on both sides, the root included
	ContentBytes int64          // bytes compared on each side (Checksum)
	Differences  int64          // differences reported
	ByKind       map[Kind]int64 // differences by kind
}

// Equal reports whether no difference was found.
func (s Summary) Equal() bool { return s.Differences == 0 }

// ErrNotDirectory is returned when a root is not a directory.
var ErrNotDirectory = errors.New("not a directory")

// Run compares cfg.Dest against cfg.Source and passes every difference to cfg.Report. The
// error is about the run itself (a root that cannot be opened, a failing Report, a cancelled
// context); entries that cannot be read are differences of kind Error.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	w, err := newWalker(ctx, cfg)
	if err != nil {
		return Summary{}, err
	}
	defer w.close()
	w.compareRoot()
	w.walk([]job{{rel: ".", side: bothSides}})
	for _, d := range HardLinkDifferences(w.links.names) {
		w.report(d)
	}
	return w.sum, w.end()
}

// DirsResult is what Dirs compared, and the multiply-linked names it met.
type DirsResult struct {
	Summary
	// Links are the names whose inode has more than one link on either side, in the listed
	// directories and below directories that exist in the destination only. The grouping
	// of hard links is a property of the whole tree: gather the Links of every call over
	// the tree and pass them to HardLinkDifferences.
	Links []LinkName
}

// Dirs compares the listed directories of cfg.Source and cfg.Dest, each one level deep: the
// entries of the directory on both sides, as Run compares them (the root's own metadata
// when "." is listed), without descending into subdirectories, which are meant to be listed
// themselves, in this call or another. It is Run cut along directories, so that calls over
// disjoint lists of every directory of the source (the walk's) report together what one Run
// reports: below a directory that exists in the destination only, Dirs looks for hard links
// (nothing lists it); a listed directory that is gone from the destination, or is something
// else there, is not reported again (the comparison of its parent does that), its source
// entries only count in the grouping of hard links; one gone from the source is left to the
// comparison of its parent. Hard-link differences are not reported: see DirsResult.Links.
func Dirs(ctx context.Context, cfg Config, dirs []string) (DirsResult, error) {
	w, err := newWalker(ctx, cfg)
	if err != nil {
		return DirsResult{}, err
	}
	defer w.close()
	w.listed = true
	jobs := make([]job, 0, len(dirs))
	for _, rel := range dirs {
		if rel == "." {
			w.compareRoot()
		}
		jobs = append(jobs, job{rel: rel, side: bothSides})
	}
	w.walk(jobs)
	err = w.end()
	return DirsResult{Summary: w.sum, Links: w.links.names}, err
}

// newWalker opens both roots; close closes them.
func newWalker(ctx context.Context, cfg Config) (*walker, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Report == nil {
		cfg.Report = func(Difference) error { return nil }
	}
	rootA, err := openRoot("source", cfg.Source)
	if err != nil {
		return nil, err
	}
	rootB, err := openRoot("destination", cfg.Dest)
	if err != nil {
		unix.Close(rootA)
		return nil, err
	}
	w := &walker{
		cfg: cfg, roots: [2]int{rootA, rootB},
		exclude: newExcluder(cfg.Exclude, cmp.Or(cfg.ExcludeRoot, cfg.Source)),
		jobs:    make(chan job, 4*cfg.Workers),
		sum:     Summary{ByKind: map[Kind]int64{}},
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	for s := sideSource; s <= sideDest; s++ {
		if err := unix.Fstat(w.roots[s], &w.rootStat[s]); err != nil {
			w.close()
			return nil, fmt.Errorf("%s %s: %w", [2]string{"source", "destination"}[s], [2]string{cfg.Source, cfg.Dest}[s], err)
		}
	}
	return w, nil
}

func (w *walker) close() {
	w.cancel()
	unix.Close(w.roots[sideSource])
	unix.Close(w.roots[sideDest])
}

// end is the run's error: the first from cfg.Report, else the context's.
func (w *walker) end() error {
	if w.err != nil {
		return w.err
	}
	return w.ctx.Err()
}

func openRoot(what, path string) (int, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err == unix.ENOTDIR {
		return -1, fmt.Errorf("%s %s: %w", what, path, ErrNotDirectory)
	}
	if err != nil {
		return -1, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return fd, nil
}

// side is one of the two trees.
type side int

const (
	sideSource side = 0
	sideDest   side = 1
	bothSides  side = 2
)

// job is one unit of the worker pool: a directory to compare (or, below a directory that
// exists on one side only, to scan for hard links), or a pair of files whose contents to
// compare.
type job struct {
	rel     string
	side    side // bothSides, or the one side a directory exists on
	content bool
	inodes  [2]inode // content: the inodes fstatat saw, to notice a file replaced since
}

// walker compares the two trees with a bounded pool. A job that finds the queue full is run
// by its finder at once, so the queue stays bounded and memory grows with the depth of the
// tree times the width of its directories, not with its size.
type walker struct {
	cfg      Config
	ctx      context.Context
	cancel   context.CancelFunc
	roots    [2]int
	rootStat [2]unix.Stat_t
	// listed: Dirs' walk, one level deep over listed directories (see Dirs).
	listed  bool
	exclude *excluder
	jobs    chan job
	pending sync.WaitGroup
	links   linkTable

	mu  sync.Mutex // guards sum, err and the calls of cfg.Report
	sum Summary
	err error
}

// walk runs the pool from the first jobs until every job is done.
func (w *walker) walk(first []job) {
	var grp errgroup.Group
	for range w.cfg.Workers {
		grp.Go(func() error {
			buf := make([]byte, 64<<10)
			for j := range w.jobs {
				w.do(j, buf)
				w.pending.Done()
			}
			return nil
		})
	}
	buf := make([]byte, 64<<10)
	for _, j := range first {
		w.submit(j, buf)
	}
	w.pending.Wait()
	close(w.jobs)
	grp.Wait()
}

// submit queues a job, or runs it now when the queue is full.
func (w *walker) submit(j job, buf []byte) {
	w.pending.Add(1)
	select {
	case w.jobs <- j:
	default:
		w.pending.Done()
		w.do(j, buf)
	}
}

func (w *walker) do(j job, buf []byte) {
	if w.ctx.Err() != nil {
		return
	}
	switch {
	case j.content:
		w.compareContents(j)
	case j.side == bothSides:
		w.compareDir(j.rel, buf)
	default:
		w.scanOneSide(j.rel, j.side, buf)
	}
}

// report passes one difference on; the first error from cfg.Report stops the run.
func (w *walker) report(d Difference) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	w.sum.Differences++
	w.sum.ByKind[d.Kind]++
	if err := w.cfg.Report(d); err != nil {
		w.err = fmt.Errorf("report: %w", err)
		w.cancel()
	}
}

func (w *walker) count(entries, dirs, bytes int64) {
	w.mu.Lock()
	w.sum.Entries += entries
	w.sum.Dirs += dirs
	w.sum.ContentBytes += bytes
	w.mu.Unlock()
}

func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// compareRoot compares the metadata of the two roots (mode, owner, mtime).
func (w *walker) compareRoot() {
	a, b := fromStat(".", &w.rootStat[sideSource]), fromStat(".", &w.rootStat[sideDest])
	w.count(1, 0, 0)
	w.compareMeta(".", &a, &b)
}

// linkInode is e's inode on side s as LinkName records it.
func (w *walker) linkInode(s side, e *entry) Inode {
	dev := e.dev
	if dev == uint64(w.rootStat[s].Dev) {
		dev = 0
	}
	return Inode{Dev: dev, Ino: e.ino}
}

// compareDir compares the directory rel, present on both sides, entry by entry. Its
// subdirectories and contents are queued after both directories are closed, so a job run
// by its finder holds no descriptors of its parents.
func (w *walker) compareDir(rel string, buf []byte) {
	if w.listed && w.excludedListed(rel) {
		return
	}
	fds, lists, absent, ok := w.readBoth(rel, buf)
	switch {
	case absent == sideSource:
		return // Dirs: gone from the source; its parent's comparison reports the destination's
	case absent == sideDest:
		// Dirs: gone from the destination or another type there, as its parent's comparison
		// reports; its source entries still count in the source's grouping of hard links.
		unix.Close(fds[sideSource])
		w.scanEntries(rel, sideSource, lists[sideSource], buf)
		return
	case !ok:
		return
	}
	as, bs := lists[sideSource], lists[sideDest]
	var seen int64
	var later []job
	for i, k := 0, 0; i < len(as) || k < len(bs); {
		var a, b *entry
		switch {
		case k == len(bs) || (i < len(as) && as[i].name < bs[k].name):
			a = &as[i]
			i++
		case i == len(as) || bs[k].name < as[i].name:
			b = &bs[k]
			k++
		default:
			a, b = &as[i], &bs[k]
			i++
			k++
		}
		name := a
		if name == nil {
			name = b
		}
		path := joinRel(rel, name.name)
		if w.exclude.excluded(name.name, path) {
			continue
		}
		if a != nil {
			seen++
		}
		later = w.compareEntry(fds, path, a, b, later)
	}
	unix.Close(fds[sideSource])
	unix.Close(fds[sideDest])
	w.count(seen, 1, 0)
	for _, j := range later {
		w.submit(j, buf)
	}
}

// excludedListed says whether a listed directory or one above it is excluded: a walk
// with the same patterns lists none of them, but Dirs does not rely on its caller for that.
func (w *walker) excludedListed(rel string) bool {
	for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if w.exclude.excluded(path.Base(p), p) {
			return true
		}
	}
	return false
}

// readBoth opens and lists the directory rel on both sides, sorted by name; a side that
// cannot be read is a difference of kind Error. In Dirs' walk a side where rel is missing,
// or is not a directory, or lies below a symlink, is returned as absent instead (with the
// source side open and listed when the destination is the absent one).
func (w *walker) readBoth(rel string, buf []byte) (fds [2]int, lists [2][]entry, absent side, ok bool) {
	absent = bothSides // none
	for s := sideSource; s <= sideDest; s++ {
		fd, err := openBeneath(w.roots[s], rel, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil && w.listed && isAbsent(err) {
			return fds, lists, s, false
		}
		if err == nil {
			if lists[s], err = readDir(fd, buf); err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			if s == sideDest {
				unix.Close(fds[sideSource])
			}
			w.reportError(rel, s, fmt.Errorf("open directory: %w", err))
			return fds, lists, absent, false
		}
		fds[s] = fd
		slices.SortFunc(lists[s], func(x, y entry) int { return cmp.Compare(x.name, y.name) })
	}
	return fds, lists, absent, true
}

// isAbsent says that an open failed because the path is not a directory reachable without
// following a symlink: missing, another type, or below a symlink (RESOLVE_NO_SYMLINKS and
// O_NOFOLLOW fail with ELOOP).
func isAbsent(err error) bool {
	return err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP
}

func (w *walker) reportError(path string, s side, err error) {
	d := Difference{Path: path, Kind: Error}
	if s == sideSource {
		d.Source = err.Error()
	} else {
		d.Dest = err.Error()
	}
	w.report(d)
}

// compareEntry compares one name of a directory; a or b is nil when the name is on one side
// only.
func (w *walker) compareEntry(fds [2]int, path string, a, b *entry, later []job) []job {
	switch {
	case a != nil && a.err != nil:
		w.reportError(path, sideSource, a.err)
		return later
	case b != nil && b.err != nil:
		w.reportError(path, sideDest, b.err)
		return later
	case b == nil:
		w.report(Difference{Path: path, Kind: Missing, Source: typeName(a.mode), Dest: "absent"})
		return w.oneSided(path, sideSource, a, later)
	case a == nil:
		w.report(Difference{Path: path, Kind: Extra, Source: "absent", Dest: typeName(b.mode)})
		return w.oneSided(path, sideDest, b, later)
	}
	if a.typ() != b.typ() {
		w.report(Difference{Path: path, Kind: Type, Source: typeName(a.mode), Dest: typeName(b.mode)})
		later = w.oneSided(path, sideSource, a, later)
		return w.oneSided(path, sideDest, b, later)
	}
	w.compareMeta(path, a, b)
	switch a.typ() {
	case unix.S_IFDIR:
		if w.listed {
			return later // listed itself
		}
		return append(later, job{rel: path, side: bothSides})
	case unix.S_IFREG:
		if a.size != b.size {
			w.report(Difference{Path: path, Kind: Size, Source: fmt.Sprint(a.size), Dest: fmt.Sprint(b.size)})
		} else if w.cfg.Checksum && a.size > 0 {
			later = append(later, job{rel: path, content: true, inodes: [2]inode{a.inode(), b.inode()}})
		}
	case unix.S_IFLNK:
		ta, errA := readlinkAt(fds[sideSource], a.name, a.size)
		tb, errB := readlinkAt(fds[sideDest], b.name, b.size)
		switch {
		case errA != nil:
			w.reportError(path, sideSource, errA)
		case errB != nil:
			w.reportError(path, sideDest, errB)
		case ta != tb:
			w.report(Difference{Path: path, Kind: Target, Source: ta, Dest: tb})
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if a.rdev != b.rdev {
			w.report(Difference{Path: path, Kind: Rdev, Source: formatRdev(a.rdev), Dest: formatRdev(b.rdev)})
		}
	}
	if a.nlink > 1 || b.nlink > 1 {
		w.links.add(LinkName{Path: path, Source: w.linkInode(sideSource, a), Dest: w.linkInode(sideDest, b),
			InSource: a.nlink > 1, InDest: b.nlink > 1, Compared: true})
	}
	return later
}

// compareMeta compares what every type has: mode bits (not of symlinks, whose mode Linux
// fixes at 0777), numeric owner and group, mtime to the nanosecond.
func (w *walker) compareMeta(path string, a, b *entry) {
	if a.typ() != unix.S_IFLNK && a.mode&0o7777 != b.mode&0o7777 {
		w.report(Difference{Path: path, Kind: Mode, Source: fmt.Sprintf("%04o", a.mode&0o7777), Dest: fmt.Sprintf("%04o", b.mode&0o7777)})
	}
	if a.uid != b.uid {
		w.report(Difference{Path: path, Kind: UID, Source: fmt.Sprint(a.uid), Dest: fmt.Sprint(b.uid)})
	}
	if a.gid != b.gid {
		w.report(Difference{Path: path, Kind: GID, Source: fmt.Sprint(a.gid), Dest: fmt.Sprint(b.gid)})
	}
	if a.mtimeSec != b.mtimeSec || a.mtimeNsec != b.mtimeNsec {
		w.report(Difference{Path: path, Kind: Mtime, Source: formatMtime(a.mtimeSec, a.mtimeNsec), Dest: formatMtime(b.mtimeSec, b.mtimeNsec)})
	}
}

// oneSided records an entry that exists on one side only (or with another type there): its
// hard links count in that side's grouping, and a directory is scanned for more of them
// (in Dirs' walk, only one of the destination: the source's are listed themselves).
// Nothing below it is reported: the difference at the entry itself says it all.
func (w *walker) oneSided(path string, s side, e *entry, later []job) []job {
	switch {
	case e.isDir() && w.listed && s == sideSource:
		return later
	case e.isDir():
		return append(later, job{rel: path, side: s})
	case e.nlink > 1 && s == sideSource:
		w.links.add(LinkName{Path: path, Source: w.linkInode(s, e), InSource: true})
	case e.nlink > 1:
		w.links.add(LinkName{Path: path, Dest: w.linkInode(s, e), InDest: true})
	}
	return later
}

// scanOneSide walks a directory that exists on one side only, for hard links.
func (w *walker) scanOneSide(rel string, s side, buf []byte) {
	fd, err := openBeneath(w.roots[s], rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return // its difference is already reported at or above rel
	}
	entries, err := readDir(fd, buf)
	unix.Close(fd)
	if err != nil {
		return
	}
	w.scanEntries(rel, s, entries, buf)
}

// scanEntries records the entries of rel on side s with oneSided.
func (w *walker) scanEntries(rel string, s side, entries []entry, buf []byte) {
	var later []job
	for i := range entries {
		e := &entries[i]
		path := joinRel(rel, e.name)
		if e.err == nil && !w.exclude.excluded(e.name, path) {
			later = w.oneSided(path, s, e, later)
		}
	}
	for _, j := range later {
		w.submit(j, buf)
	}
}
