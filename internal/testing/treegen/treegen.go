package treegen

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Defaults used when a Spec field is zero.
const (
	DefaultFanOut     = 10
	DefaultMaxSize    = 9200 // mean 4.6 KB: 100,000 files make ~460 MB, like the measured reference tree
	DefaultBigSize    = 100 << 20
	DefaultSparseSize = 16 << 20
	DefaultWorkers    = 8
	filesPerDirTarget = 100
)

// Spec describes a tree. The zero value (with Files set) is a plain tree of small files.
// The same Spec (Seed included) always produces the same names, sizes, contents, modes and
// times; only absolute symlink targets depend on the root.
type Spec struct {
	// Seed makes the tree reproducible; print it when a test fails.
	Seed uint64
	// Files is the number of small regular files spread over the directory tree.
	Files int
	// FanOut is the number of subdirectories per directory (default 10).
	FanOut int
	// Depth is the depth of the directory tree under the root; 0 picks the smallest depth
	// that keeps about 100 files per directory (at most 4).
	Depth int
	// MinSize and MaxSize bound the uniform size of small files (default 0 and 9200 bytes).
	MinSize, MaxSize int64
	// BigFiles files of BigSize bytes (default 100 MiB) go into big/.
	BigFiles int
	BigSize  int64
	// Hostile adds the corner cases under hostile/ (see hostile.go).
	Hostile bool
	// SparseSize is the apparent size of the hostile sparse file (default 16 MiB).
	SparseSize int64
	// Workers bounds the goroutines creating files (default 8).
	Workers int
}

// Summary counts what Generate created.
type Summary struct {
	Files    int   // regular files (inodes, not names)
	Dirs     int   // directories, the root excluded
	Symlinks int   // symbolic links
	Hardlink int   // extra names of regular files (links beyond the first)
	Specials int   // FIFOs, sockets and device nodes
	Bytes    int64 // apparent bytes of regular files
	// Notes lists what was skipped and why (for example owners when not running as root).
	Notes []string
}

// Plain100k is the 100,000 small-file shape of the benchmark (about 460 MB).
func Plain100k(seed uint64) Spec { return Spec{Seed: seed, Files: 100_000} }

// Big20 is the 20 × 100 MiB shape of the benchmark.
func Big20(seed uint64) Spec { return Spec{Seed: seed, BigFiles: 20, BigSize: 100 << 20} }

// Mixed is 50,000 small files and 4 × 100 MiB.
func Mixed(seed uint64) Spec {
	return Spec{Seed: seed, Files: 50_000, BigFiles: 4, BigSize: 100 << 20}
}

// Tiny1M is the 1,000,000 tiny-file shape (0 to 64 bytes each).
func Tiny1M(seed uint64) Spec {
	return Spec{Seed: seed, Files: 1_000_000, MaxSize: 64, Workers: 16}
}

// Generate writes the tree described by spec under root, which must be empty or absent.
func Generate(root string, spec Spec) (Summary, error) {
	spec = withDefaults(spec)
	if spec.Files < 0 || spec.BigFiles < 0 || spec.MinSize < 0 || spec.MaxSize < spec.MinSize {
		return Summary{}, fmt.Errorf("treegen: bad spec %+v", spec)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Summary{}, fmt.Errorf("treegen: %w", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return Summary{}, fmt.Errorf("treegen: %w", err)
	}
	if len(entries) > 0 {
		return Summary{}, fmt.Errorf("treegen: %s is not empty", root)
	}
	g := &generator{root: root, spec: spec, umaskClears644: umaskClears644()}
	if err := g.plain(); err != nil {
		return g.sum, fmt.Errorf("treegen: %w", err)
	}
	if spec.Hostile {
		if err := g.hostile(); err != nil {
			return g.sum, fmt.Errorf("treegen: hostile: %w", err)
		}
	}
	if err := g.finishDirs(); err != nil {
		return g.sum, fmt.Errorf("treegen: directory times: %w", err)
	}
	return g.sum, nil
}

func withDefaults(s Spec) Spec {
	if s.FanOut <= 0 {
		s.FanOut = DefaultFanOut
	}
	if s.MaxSize == 0 && s.MinSize == 0 {
		s.MaxSize = DefaultMaxSize
	}
	if s.BigSize <= 0 {
		s.BigSize = DefaultBigSize
	}
	if s.SparseSize <= 0 {
		s.SparseSize = DefaultSparseSize
	}
	if s.Workers <= 0 {
		s.Workers = DefaultWorkers
	}
	if s.Depth <= 0 {
		dirs := 1
		for level := 1; level <= 4; level++ {
			s.Depth = level
			dirs = dirs*s.FanOut + 1
			if dirs*filesPerDirTarget >= s.Files {
				break
			}
		}
	}
	return s
}

// dirMeta is a directory whose mode, owner and times are set at the end, deepest first, so
// creating its children does not change them afterwards.
type dirMeta struct {
	path     string
	mode     os.FileMode
	uid, gid int // -1: leave
	mtime    time.Time
	atime    time.Time
}

type generator struct {
	root string
	spec Spec
	sum  Summary
	dirs []dirMeta
	// umaskClears644 is true unless the process umask is known to keep 0644 as it is.
	umaskClears644 bool
}

// umaskClears644 reads the umask from /proc/self/status (changing it to read it would
// race with other goroutines creating files) and reports whether it clears bits of 0644.
func umaskClears644() bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return err != nil || mask&0o644 != 0
		}
	}
	return true
}

// rng returns the random stream of one object, so files can be created in any order
// (in parallel) and still be the same for the same seed.
func (g *generator) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(g.spec.Seed, stream))
}

// contentSource is a fast deterministic byte stream for file contents.
func (g *generator) contentSource(stream uint64) io.Reader {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[0:], g.spec.Seed)
	binary.LittleEndian.PutUint64(seed[8:], stream)
	binary.LittleEndian.PutUint64(seed[16:], 0x6b7273796e63) // "krsync"
	return rand.NewChaCha8(seed)
}

// timeFor picks a time between 2001 and 2025 with nanoseconds, from r.
func timeFor(r *rand.Rand) time.Time {
	const from, span = 978307200, 24 * 365 * 24 * 3600
	return time.Unix(from+r.Int64N(span), r.Int64N(1e9))
}

// Stream numbers keep the random streams of different objects apart.
const (
	streamFile    = 1 << 40
	streamBig     = 2 << 40
	streamDir     = 3 << 40
	streamHostile = 4 << 40
)

// plain creates the directory tree, the small files and the big files.
func (g *generator) plain() error {
	var dirs []string
	if g.spec.Files > 0 {
		dirs = []string{"."}
		level := []string{"."}
		for d := 0; d < g.spec.Depth; d++ {
			var next []string
			for _, parent := range level {
				for i := 0; i < g.spec.FanOut; i++ {
					next = append(next, filepath.Join(parent, fmt.Sprintf("d%02d", i)))
				}
			}
			dirs = append(dirs, next...)
			level = next
		}
		for i, d := range dirs[1:] {
			if err := g.mkdir(d, 0o755, -1, -1, g.rng(streamDir+uint64(i))); err != nil {
				return err
			}
		}
	}
	type job struct {
		rel    string
		stream uint64
		size   int64 // -1: draw from the small-file distribution
	}
	jobs := make(chan job, g.spec.Workers*4)
	sizes := make(chan int64, g.spec.Workers*4)
	grp, ctx := errgroup.WithContext(context.Background())
	for w := 0; w < g.spec.Workers; w++ {
		grp.Go(func() error {
			var total int64
			defer func() { sizes <- total }()
			for j := range jobs {
				r := g.rng(j.stream)
				size := j.size
				if size < 0 {
					size = g.spec.MinSize + r.Int64N(g.spec.MaxSize-g.spec.MinSize+1)
				}
				if err := g.writeFile(j.rel, size, j.stream, r); err != nil {
					return err
				}
				total += size
			}
			return nil
		})
	}
	grp.Go(func() error {
		defer close(jobs)
		send := func(j job) error {
			select {
			case jobs <- j:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		for i := 0; i < g.spec.Files; i++ {
			rel := filepath.Join(dirs[i%len(dirs)], fmt.Sprintf("f%07d", i))
			if err := send(job{rel: rel, stream: streamFile + uint64(i), size: -1}); err != nil {
				return err
			}
		}
		if g.spec.BigFiles > 0 {
			if err := g.mkdir("big", 0o755, -1, -1, g.rng(streamBig)); err != nil {
				return err
			}
		}
		for i := 0; i < g.spec.BigFiles; i++ {
			rel := filepath.Join("big", fmt.Sprintf("big%02d.bin", i))
			if err := send(job{rel: rel, stream: streamBig + 1 + uint64(i), size: g.spec.BigSize}); err != nil {
				return err
			}
		}
		return nil
	})
	err := grp.Wait()
	close(sizes)
	for s := range sizes {
		g.sum.Bytes += s
	}
	if err != nil {
		return err
	}
	g.sum.Files += g.spec.Files + g.spec.BigFiles
	return nil
}

// mkdir creates rel and records its metadata for finishDirs.
func (g *generator) mkdir(rel string, mode os.FileMode, uid, gid int, r *rand.Rand) error {
	if err := os.Mkdir(filepath.Join(g.root, rel), 0o700); err != nil {
		return err
	}
	g.sum.Dirs++
	g.dirs = append(g.dirs, dirMeta{path: rel, mode: mode, uid: uid, gid: gid, mtime: timeFor(r), atime: timeFor(r)})
	return nil
}

// writeFile writes size deterministic bytes to rel and sets its times.
func (g *generator) writeFile(rel string, size int64, stream uint64, r *rand.Rand) error {
	path := filepath.Join(g.root, rel)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	// The umask must not decide the mode; skip the fchmod when it cannot have.
	if g.umaskClears644 {
		if err := f.Chmod(0o644); err != nil {
			f.Close()
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	if size > 0 {
		buf := make([]byte, min(size, 1<<20))
		src := g.contentSource(stream)
		for left := size; left > 0; {
			n := min(left, int64(len(buf)))
			if _, err := io.ReadFull(src, buf[:n]); err != nil {
				f.Close()
				return err
			}
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return fmt.Errorf("write %s: %w", path, err)
			}
			left -= n
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return setTimes(path, timeFor(r), timeFor(r))
}

// setTimes sets atime and mtime of path itself (a symlink is not followed).
func setTimes(path string, atime, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}

// finishDirs sets owner, mode and times of every recorded directory and of the root,
// deepest first, after every child exists.
func (g *generator) finishDirs() error {
	sort.SliceStable(g.dirs, func(i, j int) bool { return depth(g.dirs[i].path) > depth(g.dirs[j].path) })
	r := g.rng(streamDir - 1)
	all := append(g.dirs, dirMeta{path: ".", mode: 0o755, uid: -1, gid: -1, mtime: timeFor(r), atime: timeFor(r)})
	for _, d := range all {
		path := filepath.Join(g.root, d.path)
		if d.uid >= 0 || d.gid >= 0 {
			if err := os.Lchown(path, d.uid, d.gid); err != nil {
				return fmt.Errorf("chown %s: %w", path, err)
			}
		}
		// os.Chmod maps only the portable bits; unix.Chmod keeps setgid and sticky as given.
		if err := unix.Chmod(path, unixMode(d.mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
		if err := setTimes(path, d.atime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

func depth(rel string) int {
	n := 0
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			n++
		}
	}
	return n
}

// unixMode converts Go's FileMode bits to the kernel's st_mode permission bits.
func unixMode(m os.FileMode) uint32 {
	mode := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		mode |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		mode |= unix.S_ISVTX
	}
	return mode
}
