package fpart_test

import (
	"github.com/krsync/krsync/internal/testing/testbin"

	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/krsync/krsync/fpart"
)

// treeSpec describes a seeded test tree.
type treeSpec struct {
	seed      uint64
	files     int     // regular files, spread over dirs
	dirs      int     // directories (besides the root), nested randomly
	maxSize   int64   // file sizes are uniform in [0, maxSize] (sparse, so cheap)
	zeroShare float64 // share of zero-byte files
	links     int     // hard-link groups (2 or 3 names across directories)
	outside   int     // hard-link groups with a name outside the tree (never complete)
	symlinks  int     // symlinks, half to directories (never followed)
	emptyDirs int     // empty directories
	excluded  bool    // add .zfs/, .snapshot-1/ and .ckpt with content
}

// makeTree builds spec under root and returns the entries an independent walk (WalkDir)
// sees: path relative to root -> size as fpart counts it (st_size of regular files).
func makeTree(t *testing.T, root string, spec treeSpec) {
	t.Helper()
	r := rand.New(rand.NewPCG(spec.seed, 0x5eed))
	mustDo(t, os.MkdirAll(root, 0o755))
	dirs := []string{"."}
	for i := range spec.dirs {
		parent := dirs[r.IntN(len(dirs))]
		d := filepath.Join(parent, fmt.Sprintf("d%03d", i))
		mustDo(t, os.Mkdir(filepath.Join(root, d), 0o755))
		dirs = append(dirs, d)
	}
	type plainFile struct {
		rel  string
		size int64
	}
	var plain []plainFile
	pickSize := func() int64 {
		if r.Float64() >= spec.zeroShare && spec.maxSize > 0 {
			return r.Int64N(spec.maxSize + 1)
		}
		return 0
	}
	create := func(rel string, size int64) error {
		f, err := os.Create(filepath.Join(root, rel))
		if err != nil {
			return err
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	file := func(rel string) { mustDo(t, create(rel, pickSize())) }
	for i := range spec.files {
		plain = append(plain, plainFile{filepath.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("f%05d.dat", i)), pickSize()})
	}
	// Creating files is the slow part on a busy machine: a few goroutines share it.
	var wg sync.WaitGroup
	const creators = 8
	errs := make(chan error, creators)
	for w := range creators {
		wg.Go(func() {
			for i := w; i < len(plain); i += creators {
				if err := create(plain[i].rel, plain[i].size); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	mustDo(t, <-errs)
	for i := range spec.links {
		first := filepath.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("h%04d", i))
		file(first)
		for k := range 1 + r.IntN(2) {
			other := filepath.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("h%04d-%d", i, k))
			mustDo(t, os.Link(filepath.Join(root, first), filepath.Join(root, other)))
		}
	}
	if spec.outside > 0 {
		outside := t.TempDir()
		for i := range spec.outside {
			rel := filepath.Join(dirs[r.IntN(len(dirs))], fmt.Sprintf("o%04d", i))
			file(rel)
			mustDo(t, os.Link(filepath.Join(root, rel), filepath.Join(outside, fmt.Sprint(i))))
		}
	}
	for i := range spec.symlinks {
		target := dirs[r.IntN(len(dirs))]
		if i%2 == 1 {
			target = "nowhere"
		}
		mustDo(t, os.Symlink(target, filepath.Join(root, dirs[r.IntN(len(dirs))], fmt.Sprintf("s%03d", i))))
	}
	for i := range spec.emptyDirs {
		mustDo(t, os.Mkdir(filepath.Join(root, dirs[r.IntN(len(dirs))], fmt.Sprintf("e%03d", i)), 0o755))
	}
	if spec.excluded {
		for _, d := range []string{".zfs/snap/a", ".snapshot-1/x", "d-keep/.ckpt"} {
			mustDo(t, os.MkdirAll(filepath.Join(root, d), 0o755))
			mustDo(t, os.WriteFile(filepath.Join(root, d, "inside"), []byte("x"), 0o644))
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// expectedEntries walks root with filepath.WalkDir (no code shared with fpart): regular
// files, symlinks and other non-directories; directories when keepDir says so.
func expectedEntries(t *testing.T, root string, skip func(rel string, d fs.DirEntry) bool, keepDir func(rel string, empty bool) bool) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel != "." && skip != nil && skip(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			names, err := os.ReadDir(path)
			if err != nil {
				return err
			}
			if keepDir != nil && keepDir(rel, len(names) == 0) {
				want[rel] = 0
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		size := int64(0)
		if info.Mode().IsRegular() {
			size = info.Size()
		}
		want[rel] = size
		return nil
	})
	mustDo(t, err)
	return want
}

// walkAll runs fpart.Walk and returns its partitions.
func walkAll(t *testing.T, root string, opts fpart.Options) ([]fpart.Partition, fpart.Summary) {
	t.Helper()
	var parts []fpart.Partition
	sum, err := fpart.Walk(context.Background(), root, opts, fpart.Handler{
		Partition: func(p fpart.Partition) error { parts = append(parts, p); return nil },
	})
	if err != nil {
		t.Fatalf("Walk(%s, %+v): %v", root, opts, err)
	}
	for i, p := range parts {
		if p.Index != i {
			t.Fatalf("partition %d has Index %d", i, p.Index)
		}
	}
	return parts, sum
}

// fpartLine is one line of fpart's stdout: partition number, size, path.
type fpartLine struct {
	part int
	size int64
	path string
}

// runFpart runs the real fpart in dir (so paths start with the root argument) and parses
// its stdout.
func runFpart(t *testing.T, dir string, args ...string) []fpartLine {
	t.Helper()
	cmd := exec.Command(testbin.Fpart(t), args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fpart %v: %v: %s", args, err, stderr.String())
	}
	var lines []fpartLine
	for _, l := range strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n") {
		if l == "" {
			continue
		}
		fields := strings.SplitN(l, "\t", 3)
		if len(fields) != 3 {
			t.Fatalf("fpart line %q: want 3 fields", l)
		}
		part, err1 := strconv.Atoi(fields[0])
		size, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("fpart line %q: bad numbers", l)
		}
		lines = append(lines, fpartLine{part, size, fields[2]})
	}
	return lines
}

// ourLines renders partitions as fpart's stdout lines for root.
func ourLines(parts []fpart.Partition, root string) []fpartLine {
	var lines []fpartLine
	number := 0
	for _, p := range parts {
		n := 0
		if !p.Oversized {
			number++
			n = number
		}
		for _, e := range p.Entries {
			lines = append(lines, fpartLine{n, e.Size, fpart.FullPath(root, e.Path)})
		}
	}
	return lines
}

// entrySet maps path -> size and fails on a path seen twice.
func entrySet(t *testing.T, lines []fpartLine, who string) map[string]int64 {
	t.Helper()
	set := map[string]int64{}
	for _, l := range lines {
		if _, dup := set[l.path]; dup {
			t.Fatalf("%s: %q appears twice", who, l.path)
		}
		set[l.path] = l.size
	}
	return set
}

// compareSets reports the differences between two entry sets, a few of each.
func compareSets(t *testing.T, got, want map[string]int64) {
	t.Helper()
	var missing, extra, sizes []string
	for p, s := range want {
		g, ok := got[p]
		switch {
		case !ok:
			missing = append(missing, p)
		case g != s:
			sizes = append(sizes, fmt.Sprintf("%s: %d != %d", p, g, s))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			extra = append(extra, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra)+len(sizes) > 0 {
		t.Errorf("entries differ: %d missing %q, %d extra %q, %d sizes %q",
			len(missing), head(missing), len(extra), head(extra), len(sizes), head(sizes))
	}
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// inodeOf returns the device and inode of path (not following symlinks).
func inodeOf(t *testing.T, path string) [2]uint64 {
	t.Helper()
	var st syscall.Stat_t
	mustDo(t, syscall.Lstat(path, &st))
	return [2]uint64{st.Dev, st.Ino}
}

// hardLinks maps each path (relative to root) of an inode with nlink > 1 to its inode.
func hardLinks(t *testing.T, root string) map[string][2]uint64 {
	t.Helper()
	links := map[string][2]uint64{}
	mustDo(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			rel, _ := filepath.Rel(root, path)
			links[rel] = [2]uint64{st.Dev, st.Ino}
		}
		return nil
	}))
	return links
}

// checkLinksTogether fails when two paths of one inode are in different partitions.
func checkLinksTogether(t *testing.T, links map[string][2]uint64, parts []fpart.Partition) {
	t.Helper()
	if len(links) == 0 {
		t.Fatal("the tree has no hard links to check")
	}
	where := map[[2]uint64]int{}
	for i, p := range parts {
		for _, e := range p.Entries {
			key, ok := links[e.Path]
			if !ok || e.Dir {
				continue
			}
			if j, ok := where[key]; ok && j != i {
				t.Errorf("hard link %q is in partition %d, another name of its inode in %d", e.Path, i, j)
			}
			where[key] = i
		}
	}
}
