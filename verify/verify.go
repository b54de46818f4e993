package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Report == nil {
		cfg.Report = func(Difference) error { return nil }
	}
	rootA, err := openRoot("source", cfg.Source)
	if err != nil {
		return Summary{}, err
	}
	defer unix.Close(rootA)
	rootB, err := openRoot("destination", cfg.Dest)
	if err != nil {
		return Summary{}, err
	}
	defer unix.Close(rootB)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &walker{
		cfg: cfg, ctx: ctx, cancel: cancel, roots: [2]int{rootA, rootB},
		exclude: newExcluder(cfg.Exclude, cfg.Source),
		jobs:    make(chan job, 4*cfg.Workers),
		sum:     Summary{ByKind: map[Kind]int64{}},
	}
	if err := w.compareRoots(); err != nil {
		return w.sum, err
	}
	w.walk()
	for _, d := range w.links.differences() {
		w.report(d)
	}
	if w.err != nil {
		return w.sum, w.err
	}
	if err := ctx.Err(); err != nil {
		return w.sum, err
	}
	return w.sum, nil
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
	cfg     Config
	ctx     context.Context
	cancel  context.CancelFunc
	roots   [2]int
	exclude *excluder
	jobs    chan job
	pending sync.WaitGroup
	links   linkTable

	mu  sync.Mutex // guards sum, err and the calls of cfg.Report
	sum Summary
	err error
}

// walk runs the pool from the root until every job is done.
func (w *walker) walk() {
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
	w.pending.Add(1)
	w.jobs <- job{rel: ".", side: bothSides}
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

// compareRoots compares the metadata of the two roots (mode, owner, mtime).
func (w *walker) compareRoots() error {
	var sa, sb unix.Stat_t
	if err := unix.Fstat(w.roots[sideSource], &sa); err != nil {
		return fmt.Errorf("source %s: %w", w.cfg.Source, err)
	}
	if err := unix.Fstat(w.roots[sideDest], &sb); err != nil {
		return fmt.Errorf("destination %s: %w", w.cfg.Dest, err)
	}
	a, b := fromStat(".", &sa), fromStat(".", &sb)
	w.count(1, 0, 0)
	w.compareMeta(".", &a, &b)
	return nil
}

// compareDir compares the directory rel, present on both sides, entry by entry. Its
// subdirectories and contents are queued after both directories are closed, so a job run
// by its finder holds no descriptors of its parents.
func (w *walker) compareDir(rel string, buf []byte) {
	fds, lists, ok := w.readBoth(rel, buf)
	if !ok {
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

// readBoth opens and lists the directory rel on both sides, sorted by name; a side that
// cannot be read is a difference of kind Error.
func (w *walker) readBoth(rel string, buf []byte) (fds [2]int, lists [2][]entry, ok bool) {
	for s := sideSource; s <= sideDest; s++ {
		fd, err := openBeneath(w.roots[s], rel, unix.O_RDONLY|unix.O_DIRECTORY)
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
			return fds, lists, false
		}
		fds[s] = fd
		slices.SortFunc(lists[s], func(x, y entry) int { return cmp.Compare(x.name, y.name) })
	}
	return fds, lists, true
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
		w.links.add(linkName{path: path, a: a.inode(), b: b.inode(), inA: a.nlink > 1, inB: b.nlink > 1, compared: true})
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
// hard links count in that side's grouping, and a directory is scanned for more of them.
// Nothing below it is reported: the difference at the entry itself says it all.
func (w *walker) oneSided(path string, s side, e *entry, later []job) []job {
	switch {
	case e.isDir():
		return append(later, job{rel: path, side: s})
	case e.nlink > 1 && s == sideSource:
		w.links.add(linkName{path: path, a: e.inode(), inA: true})
	case e.nlink > 1:
		w.links.add(linkName{path: path, b: e.inode(), inB: true})
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
