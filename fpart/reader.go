package fpart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirEntry is one name of a directory with what lstat(2) says about it.
type dirEntry struct {
	name  string
	mode  uint32 // st_mode & S_IFMT
	size  int64  // st_size of regular files, 0 for everything else (fpart's get_size)
	dev   uint64
	ino   uint64
	nlink uint64
	err   error // lstat failed (fts's FTS_NS)
	// unchanged: Handler.Compare's function said the destination already holds it.
	unchanged bool
}

func (e *dirEntry) isDir() bool { return e.mode == unix.S_IFDIR }

// listing is a directory's entries in readdir(3) order, the order fts(3) and fpart walk in.
type listing struct {
	entries []dirEntry
	err     error // opening or reading failed; entries may hold what was read before
	// sub[k] is the job of entries[k] when it is a directory the walk descends into.
	sub []*dirJob
}

// dirJob is one directory to read: either a prefetch worker or the walk itself reads it,
// whoever claims it first; the walk waits for a worker that got there first.
type dirJob struct {
	root    int    // index of the walk's root
	path    string // as given to open(2)
	rel     string // relative to the root, "." for the root
	claimed atomic.Bool
	done    chan struct{}
	result  listing
	// prefetched is set by the worker that read the job; it holds a prefetch token.
	prefetched bool
}

func newDirJob(root int, path, rel string) *dirJob {
	return &dirJob{root: root, path: path, rel: rel, done: make(chan struct{})}
}

// prefetcher reads directories ahead of the walk with a bounded number of goroutines,
// holding at most cap(tokens) read-but-unwalked listings. Jobs are taken from a stack,
// children pushed in reverse, so reads follow the walk's depth-first order.
type prefetcher struct {
	mu      sync.Mutex
	wake    *sync.Cond
	stack   []*dirJob
	stopped bool
	quit    chan struct{}
	// allReaders is closed by rampUp; readers but the first wait for it.
	allReaders chan struct{}
	rampOnce   sync.Once
	tokens     chan struct{}
	read       func(*dirJob) listing
	wg         sync.WaitGroup
}

func newPrefetcher(readers, window int, read func(*dirJob) listing) *prefetcher {
	p := &prefetcher{tokens: make(chan struct{}, window), quit: make(chan struct{}),
		allReaders: make(chan struct{}), read: read}
	p.wake = sync.NewCond(&p.mu)
	for i := range readers {
		p.wg.Add(1)
		go p.work(i > 0)
	}
	return p
}

// rampUp lets every reader work. Until then one reader prefetches, so that the reads the
// first partition waits for do not share the CPUs with reads far ahead of it.
func (p *prefetcher) rampUp() {
	p.rampOnce.Do(func() { close(p.allReaders) })
}

// push offers jobs for prefetching; the last one is read first.
func (p *prefetcher) push(jobs []*dirJob) {
	if len(jobs) == 0 {
		return
	}
	p.mu.Lock()
	p.stack = append(p.stack, jobs...)
	p.mu.Unlock()
	p.wake.Broadcast()
}

// stop ends the workers and waits for them.
func (p *prefetcher) stop() {
	p.mu.Lock()
	p.stopped = true
	p.stack = nil
	p.mu.Unlock()
	close(p.quit)
	p.wake.Broadcast()
	p.wg.Wait()
}

func (p *prefetcher) work(waitForRampUp bool) {
	defer p.wg.Done()
	if waitForRampUp {
		select {
		case <-p.allReaders:
		case <-p.quit:
			return
		}
	}
	for {
		select {
		case p.tokens <- struct{}{}: // wait until fewer than cap(tokens) listings are held
		case <-p.quit:
			return
		}
		p.mu.Lock()
		for len(p.stack) == 0 && !p.stopped {
			p.wake.Wait()
		}
		if p.stopped {
			p.mu.Unlock()
			return
		}
		job := p.stack[len(p.stack)-1]
		p.stack[len(p.stack)-1] = nil
		p.stack = p.stack[:len(p.stack)-1]
		p.mu.Unlock()
		if !job.claimed.CompareAndSwap(false, true) {
			<-p.tokens // the walk read it itself
			continue
		}
		job.result = p.read(job)
		job.prefetched = true
		close(job.done)
	}
}

// take returns the job's listing, reading it now unless a worker has claimed it.
func (p *prefetcher) take(ctx context.Context, job *dirJob) (listing, error) {
	if job.claimed.CompareAndSwap(false, true) {
		return p.read(job), nil
	}
	select {
	case <-job.done:
	case <-ctx.Done():
		return listing{}, ctx.Err()
	}
	if job.prefetched {
		<-p.tokens
	}
	res := job.result
	job.result = listing{}
	return res, nil
}

// readDir lists a directory with getdents(2) and lstat(2)s its entries relative to the
// directory's descriptor (fstatat(2), AT_SYMLINK_NOFOLLOW). It never follows a symlink
// below the root: directories are opened with O_NOFOLLOW, except the root itself, which
// may be a symlink given on the command line (fts's FTS_COMFOLLOW). Directories are only
// lstat'ed when needDirStat (-b needs their device numbers). same, when not nil, is asked
// about each regular file and symlink (see Handler.Compare).
func readDir(path string, isRoot, needDirStat bool, buffers *sync.Pool, same SameFunc) listing {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !isRoot {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := openDir(path, flags)
	if err != nil {
		return listing{err: fmt.Errorf("open: %w", err)}
	}
	defer unix.Close(fd)
	var res listing
	bufp := buffers.Get().(*[]byte)
	defer buffers.Put(bufp)
	buf := *bufp
	// Names are gathered in one arena and become substrings of one string: one
	// allocation per directory instead of one per name.
	var arena []byte
	var offsets []int
	var pending []int32 // entries to lstat
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			res.err = fmt.Errorf("read directory: %w", err)
			break
		}
		if n <= 0 {
			break
		}
		if res.entries == nil {
			// A record is at least 24 bytes; most names are short.
			res.entries = make([]dirEntry, 0, n/32+1)
			offsets = make([]int, 0, n/32+2)
			arena = make([]byte, 0, n/2)
		}
		arena, offsets, pending = parseDirents(buf[:n], needDirStat, &res.entries, arena, offsets, pending)
	}
	names := string(arena)
	statEntries(fd, res.entries, arena, offsets, pending, names, same)
	for k := range res.entries {
		res.entries[k].name = names[offsets[k] : offsets[k+1]-1] // without its NUL
	}
	return res
}

// Directories with many entries to lstat are stat'ed by several goroutines: on network
// storage every lstat is a round trip, and a directory of thousands of files read one lstat
// at a time held up the first partition for seconds (1 ms per request: 1,000 files, 1 s).
const (
	// parallelStatMin is the size of the chunks the goroutines take; a directory with fewer
	// than two chunks' worth of lstats has them all done by its reader.
	parallelStatMin = 16
	// maxStatGoroutines bounds the goroutines of one directory.
	maxStatGoroutines = 8
)

// statEntries lstats the entries at the pending indexes (their names are NUL-terminated in
// arena at offsets, and without the NUL in names at the same offsets), filling mode, size,
// device, inode and link count, or err, and asks same (when not nil) whether a regular file
// or symlink is unchanged in the destination. Each goroutine writes only the entries it took.
func statEntries(fd int, entries []dirEntry, arena []byte, offsets []int, pending []int32, names string, same SameFunc) {
	stat := func(k int32) {
		e := &entries[k]
		var st unix.Stat_t
		if err := lstatAt(fd, &arena[offsets[k]], &st); err != nil {
			e.err = fmt.Errorf("lstat: %w", err)
			return
		}
		e.mode = st.Mode & unix.S_IFMT
		e.dev, e.ino, e.nlink = uint64(st.Dev), st.Ino, uint64(st.Nlink)
		if e.mode == unix.S_IFREG {
			e.size = st.Size
		}
		// Only entries that are a unit of their own: every link of a hard-linked inode must
		// reach the same partition (the walk's link groups), so none is left out.
		if same != nil && (e.mode == unix.S_IFREG || e.mode == unix.S_IFLNK) && e.nlink <= 1 {
			e.unchanged = same(fd, names[offsets[k]:offsets[k+1]-1], &st)
		}
	}
	if len(pending) < 2*parallelStatMin {
		for _, k := range pending {
			stat(k)
		}
		return
	}
	var next atomic.Int64 // the next chunk of pending
	var wg sync.WaitGroup
	for range min(maxStatGoroutines, len(pending)/parallelStatMin) {
		wg.Go(func() {
			for {
				start := int(next.Add(parallelStatMin)) - parallelStatMin
				if start >= len(pending) {
					return
				}
				for _, k := range pending[start:min(start+parallelStatMin, len(pending))] {
					stat(k)
				}
			}
		})
	}
	wg.Wait()
}

// openDir opens a directory; a path longer than PATH_MAX (which fts handles by changing
// directory) is opened one component at a time with openat(2), without following symlinks
// below the longest prefix the kernel accepts.
func openDir(path string, flags int) (int, error) {
	fd, err := openRetry(unix.AT_FDCWD, path, flags)
	if !errors.Is(err, unix.ENAMETOOLONG) {
		return fd, err
	}
	cut := strings.LastIndexByte(path[:min(len(path), unix.PathMax-1)], '/')
	if cut <= 0 {
		return -1, err
	}
	fd, err = openRetry(unix.AT_FDCWD, path[:cut], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return -1, err
	}
	for _, name := range strings.Split(path[cut+1:], "/") {
		if name == "" {
			continue
		}
		next, err := openRetry(fd, name, flags|unix.O_NOFOLLOW)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

func openRetry(dirfd int, path string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// newDirentBuffers returns a pool of getdents buffers, recycled across directories.
func newDirentBuffers() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
}

// parseDirents appends the linux_dirent64 records of buf (skipping "." and ".."); the index
// of each that needs an lstat (every non-directory, and directories when needDirStat) goes
// to pending, for statEntries. A name's bytes and a NUL go to arena; offsets holds where
// each name starts (and one past the end).
func parseDirents(buf []byte, needDirStat bool, out *[]dirEntry, arena []byte, offsets []int, pending []int32) ([]byte, []int, []int32) {
	const nameOffset = 19 // d_ino(8) d_off(8) d_reclen(2) d_type(1)
	if len(offsets) == 0 {
		offsets = append(offsets, 0)
	}
	for len(buf) >= nameOffset {
		reclen := int(*(*uint16)(unsafe.Pointer(&buf[16])))
		if reclen < nameOffset || reclen > len(buf) {
			break
		}
		rec := buf[:reclen]
		buf = buf[reclen:]
		ino := *(*uint64)(unsafe.Pointer(&rec[0]))
		if ino == 0 {
			continue
		}
		name := rec[nameOffset:]
		terminated := false
		for i, c := range name {
			if c == 0 {
				name, terminated = name[:i], true
				break
			}
		}
		if !terminated || len(name) == 0 || (len(name) == 1 && name[0] == '.') || (len(name) == 2 && name[0] == '.' && name[1] == '.') {
			continue
		}
		e := dirEntry{mode: direntMode(rec[18]), ino: ino}
		if e.mode != unix.S_IFDIR || needDirStat {
			pending = append(pending, int32(len(*out)))
		}
		*out = append(*out, e)
		arena = append(arena, name...)
		arena = append(arena, 0) // lstatAt's C string
		offsets = append(offsets, len(arena))
	}
	return arena, offsets, pending
}

// direntMode maps a d_type to st_mode's file type bits; 0 (unknown) makes readDir lstat.
func direntMode(t byte) uint32 {
	switch t {
	case unix.DT_DIR:
		return unix.S_IFDIR
	case unix.DT_REG:
		return unix.S_IFREG
	case unix.DT_LNK:
		return unix.S_IFLNK
	case unix.DT_FIFO:
		return unix.S_IFIFO
	case unix.DT_SOCK:
		return unix.S_IFSOCK
	case unix.DT_CHR:
		return unix.S_IFCHR
	case unix.DT_BLK:
		return unix.S_IFBLK
	}
	return 0
}
