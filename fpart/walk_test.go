package fpart_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/internal/testing/testbin"
)

// TestMatchesFpart runs the real fpart and fpart.Walk with the same options on the same
// tree (no hard links, which fpart splits): live mode must print exactly fpart's lines;
// the other modes must cover the same entries, -f/-s with as many partitions, -n with a
// balance at least as good.
func TestMatchesFpart(t *testing.T) {
	testbin.Fpart(t)
	base := t.TempDir()
	makeTree(t, filepath.Join(base, "t"), treeSpec{
		seed: 7, files: 1500, dirs: 100, maxSize: 200_000, zeroShare: 0.2,
		symlinks: 20, emptyDirs: 15, excluded: true,
	})
	t.Chdir(base)
	tests := []struct {
		name string
		args string
		// exact: same lines in the same order; else same entries and partition count.
		exact, balance bool
	}{
		{name: "live files", args: "-L -f 50", exact: true},
		{name: "live size", args: "-L -s 1M", exact: true},
		{name: "live files and size", args: "-L -f 70 -s 2M", exact: true},
		{name: "live empty dirs", args: "-L -z -f 50", exact: true},
		{name: "live unreadable dirs", args: "-L -zz -f 50", exact: true},
		{name: "live all dirs", args: "-L -zzz -f 50", exact: true},
		{name: "chart default", args: "-L -f 200 -zz -x .zfs -x .snapshot* -x .ckpt", exact: true},
		{name: "exclude case-insensitive", args: "-L -f 200 -X .ZFS -X F00*", exact: true},
		{name: "exclude path", args: "-L -f 200 -x t/d00* -x */d01*", exact: true},
		{name: "include", args: "-L -f 200 -y f0001* -Y S00*", exact: true},
		{name: "include with dirs", args: "-L -f 200 -zzz -y *1*", exact: true},
		{name: "dirs only", args: "-L -f 20 -E", exact: true},
		{name: "leaf dirs", args: "-L -f 20 -D", exact: true},
		{name: "trailing slash", args: "-L -f 20 -zz -e", exact: true},
		{name: "files", args: "-f 100 -zz"},
		{name: "size", args: "-s 1M"},
		{name: "files and size", args: "-f 60 -s 3M"},
		{name: "balanced", args: "-n 7", balance: true},
		{name: "balanced one", args: "-n 1", balance: true},
		{name: "balanced many", args: "-n 40 -zzz", balance: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := strings.Fields(tt.args)
			want := runFpart(t, base, append(args, "t")...)
			opts, rest, err := fpart.ParseArgs(args)
			if err != nil || len(rest) != 0 {
				t.Fatalf("ParseArgs(%q) = %v, %q", tt.args, err, rest)
			}
			parts, _ := walkAll(t, "t", opts)
			got := ourLines(parts, "t")
			if opts.TrailingSlash {
				got = slashDirs(parts, got)
			}
			if tt.exact {
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("lines differ from fpart's:\n got %d lines, first %v\nwant %d lines, first %v",
						len(got), firstDiff(got, want), len(want), firstDiff(want, got))
				}
				return
			}
			compareSets(t, entrySet(t, got, "krsync"), entrySet(t, want, "fpart"))
			if tt.balance {
				g, w := imbalance(got), imbalance(want)
				t.Logf("max/mean: krsync %.4f, fpart %.4f", g, w)
				if g > w+1e-9 {
					t.Errorf("balance max/mean %.4f is worse than fpart's %.4f", g, w)
				}
				if n := countParts(want); len(parts) != n {
					t.Errorf("%d partitions, fpart made %d", len(parts), n)
				}
				return
			}
			if n := countParts(want); len(parts) != n {
				t.Errorf("%d partitions, fpart made %d", len(parts), n)
			}
			if !opts.Live {
				// First fit in the same walk order: every entry in fpart's partition.
				gotPart, wantPart := partOf(got), partOf(want)
				if !reflect.DeepEqual(gotPart, wantPart) {
					t.Errorf("entries are not in fpart's partitions")
				}
			}
		})
	}
}

func partOf(lines []fpartLine) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		m[l.path] = l.part
	}
	return m
}

// slashDirs adds the '/' that -e puts after directory entries (the Printer's job).
func slashDirs(parts []fpart.Partition, lines []fpartLine) []fpartLine {
	i := 0
	for _, p := range parts {
		for _, e := range p.Entries {
			if e.Dir && !strings.HasSuffix(lines[i].path, "/") {
				lines[i].path += "/"
			}
			i++
		}
	}
	return lines
}

func firstDiff(a, b []fpartLine) any {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return a[i]
		}
	}
	return "none"
}

func countParts(lines []fpartLine) int {
	seen := map[int]bool{}
	for _, l := range lines {
		seen[l.part] = true
	}
	return len(seen)
}

// imbalance is max partition size / mean partition size.
func imbalance(lines []fpartLine) float64 {
	sizes := map[int]int64{}
	var total int64
	for _, l := range lines {
		sizes[l.part] += l.size
		total += l.size
	}
	if total == 0 {
		return 1
	}
	var biggest int64
	for _, s := range sizes {
		biggest = max(biggest, s)
	}
	return float64(biggest) / (float64(total) / float64(len(sizes)))
}

// TestHardLinksTogether: every name of an inode shares a partition in every mode, also
// groups with a name outside the tree, and nothing is lost or repeated.
func TestHardLinksTogether(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, treeSpec{seed: 11, files: 400, dirs: 40, maxSize: 50_000, links: 80, outside: 10, symlinks: 5})
	want := expectedEntries(t, root, nil, nil)
	links := hardLinks(t, root)
	tests := []struct {
		name string
		opts fpart.Options
	}{
		{"live files", fpart.Options{Live: true, MaxFiles: 7}},
		{"live size", fpart.Options{Live: true, MaxBytes: 100_000}},
		{"files", fpart.Options{MaxFiles: 7}},
		{"size", fpart.Options{MaxBytes: 100_000}},
		{"balanced", fpart.Options{Parts: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, sum := walkAll(t, root, tt.opts)
			checkLinksTogether(t, links, parts)
			compareSets(t, entrySet(t, ourLines(parts, "."), "krsync"), prefixed(want, "."))
			for _, p := range parts {
				if tt.opts.MaxFiles > 0 && int64(len(p.Entries)) > tt.opts.MaxFiles {
					t.Errorf("partition %d has %d entries, over -f %d", p.Index, len(p.Entries), tt.opts.MaxFiles)
				}
			}
			if sum.Entries != int64(len(want)) || sum.Partitions != len(parts) {
				t.Errorf("summary %+v, want %d entries in %d partitions", sum, len(want), len(parts))
			}
		})
	}
}

// prefixed maps relative paths to fpart.FullPath(root, rel).
func prefixed(set map[string]int64, root string) map[string]int64 {
	out := make(map[string]int64, len(set))
	for p, s := range set {
		out[fpart.FullPath(root, p)] = s
	}
	return out
}

// TestHundredThousand is the acceptance check: -f 1000 -zz on 100,000 files with
// hard links: every entry once, no partition over 1000, hard links together; likewise for
// -s 64M, -n 7 and live mode.
func TestHundredThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 100,000-file tree")
	}
	t.Parallel() // creating the files is most of it: overlap it with the other tests
	root := t.TempDir()
	makeTree(t, root, treeSpec{seed: 100, files: 100_000, dirs: 1000, maxSize: 20_000, zeroShare: 0.1,
		links: 500, symlinks: 100, emptyDirs: 50, excluded: true})
	skip := func(rel string, d fs.DirEntry) bool {
		name := d.Name()
		return name == ".zfs" || strings.HasPrefix(name, ".snapshot") || name == ".ckpt"
	}
	want := expectedEntries(t, root, skip, func(rel string, empty bool) bool { return empty })
	links := hardLinks(t, root)
	chart, err := fpart.ParseOptionString("-zz -x .zfs -x .snapshot* -x .ckpt")
	mustDo(t, err)
	tests := []struct {
		name            string
		maxFiles, parts int
		maxBytes        int64
		live            bool
	}{
		{name: "files", maxFiles: 1000},
		{name: "live files", maxFiles: 1000, live: true},
		{name: "size", maxBytes: 64 << 20},
		{name: "live files and size", maxFiles: 1000, maxBytes: 64 << 20, live: true},
		{name: "balanced", parts: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := chart
			opts.MaxFiles, opts.MaxBytes, opts.Parts, opts.Live = int64(tt.maxFiles), tt.maxBytes, tt.parts, tt.live
			parts, _ := walkAll(t, root, opts)
			compareSets(t, entrySet(t, ourLines(parts, "."), "krsync"), prefixed(want, "."))
			checkLinksTogether(t, links, parts)
			for _, p := range parts {
				if tt.maxFiles > 0 && len(p.Entries) > tt.maxFiles {
					t.Errorf("partition %d: %d entries > %d", p.Index, len(p.Entries), tt.maxFiles)
				}
			}
			if tt.parts > 0 && len(parts) != tt.parts {
				t.Errorf("%d partitions, want %d", len(parts), tt.parts)
			}
		})
	}
}

// TestStreaming proves live partitions are handed out while the walk is still going:
// when the first partition arrives, most directories have not been reported yet.
func TestStreaming(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, treeSpec{seed: 3, files: 1000, dirs: 400, maxSize: 10})
	var dirsAtFirst, dirsTotal, partitions int
	_, err := fpart.Walk(context.Background(), root, fpart.Options{Live: true, MaxFiles: 10}, fpart.Handler{
		Dir: func(string) error { dirsTotal++; return nil },
		Partition: func(p fpart.Partition) error {
			if partitions == 0 {
				dirsAtFirst = dirsTotal
			}
			partitions++
			return nil
		},
	})
	mustDo(t, err)
	if dirsTotal != 401 {
		t.Fatalf("Dir called %d times, want 401 (400 directories and the root)", dirsTotal)
	}
	if dirsAtFirst*4 > dirsTotal {
		t.Errorf("first partition after %d of %d directories: not streaming", dirsAtFirst, dirsTotal)
	}
	t.Logf("first partition after %d of %d directories, %d partitions", dirsAtFirst, dirsTotal, partitions)
}

// TestHandlerErrorStops: an error from the handler ends the walk and is returned.
func TestHandlerErrorStops(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, treeSpec{seed: 4, files: 500, dirs: 30})
	stop := errors.New("consumer gone")
	calls := 0
	_, err := fpart.Walk(context.Background(), root, fpart.Options{Live: true, MaxFiles: 10}, fpart.Handler{
		Partition: func(fpart.Partition) error { calls++; return stop },
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("err %v after %d calls, want the handler's error after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fpart.Walk(ctx, root, fpart.Options{Live: true, MaxFiles: 10}, fpart.Handler{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled walk: err %v, want context.Canceled", err)
	}
}

// TestDeterministic: the same tree gives the same partitions whatever the concurrency.
func TestDeterministic(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, treeSpec{seed: 5, files: 1000, dirs: 100, maxSize: 5000, links: 50})
	for _, opts := range []fpart.Options{{Live: true, MaxFiles: 50}, {MaxBytes: 200_000}, {Parts: 4}} {
		var runs [][]fpart.Partition
		for _, readers := range []int{1, 3, 16} {
			opts.Readers = readers
			parts, _ := walkAll(t, root, opts)
			runs = append(runs, parts)
		}
		for i := 1; i < len(runs); i++ {
			if !reflect.DeepEqual(runs[0], runs[i]) {
				t.Errorf("%+v: partitions differ between runs 0 and %d", opts, i)
			}
		}
	}
}

// TestNamesOfAnyBytes: names with newlines, tabs, invalid UTF-8 and leading dashes come
// out unchanged, through Walk and through the -0 -o files of the Printer.
func TestNamesOfAnyBytes(t *testing.T) {
	root := t.TempDir()
	names := []string{"new\nline", "tab\there", "-leading-dash", "--", "bad-\xff\xfe-utf8", " space ", "star*", "[x]", "back\\slash", ".hidden", "é"}
	want := map[string]int64{}
	for i, n := range names {
		mustDo(t, os.Mkdir(filepath.Join(root, "dir "+n), 0o755))
		mustDo(t, os.WriteFile(filepath.Join(root, "dir "+n, n), make([]byte, i), 0o644))
		want["dir "+n+"/"+n] = int64(i)
	}
	parts, _ := walkAll(t, root, fpart.Options{Live: true, MaxFiles: 4})
	compareSets(t, entrySet(t, ourLines(parts, "."), "krsync"), prefixed(want, "."))

	prefix := filepath.Join(t.TempDir(), "part")
	opts := fpart.Options{Live: true, MaxFiles: 4, NulTerminated: true, Output: prefix}
	printer := fpart.NewPrinter(opts, []string{root}, nil, nil)
	for _, p := range parts {
		mustDo(t, printer.Print(p))
	}
	got := map[string]int64{}
	for i := range parts {
		data, err := os.ReadFile(prefix + "." + strconv.Itoa(i+1))
		mustDo(t, err)
		for _, path := range strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00") {
			rel, err := filepath.Rel(root, path)
			mustDo(t, err)
			info, err := os.Lstat(path)
			mustDo(t, err)
			got[rel] = info.Size()
		}
	}
	compareSets(t, got, want)
}

// TestSymlinksNotFollowed: a symlink to a directory, and a loop, are single entries.
func TestSymlinksNotFollowed(t *testing.T) {
	root := t.TempDir()
	mustDo(t, os.MkdirAll(filepath.Join(root, "real/sub"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(root, "real/sub/f"), []byte("abc"), 0o644))
	mustDo(t, os.Symlink("real", filepath.Join(root, "link-to-dir")))
	mustDo(t, os.Symlink(".", filepath.Join(root, "real/loop")))
	mustDo(t, os.Symlink("/", filepath.Join(root, "root-link")))
	parts, _ := walkAll(t, root, fpart.Options{Live: true, MaxFiles: 100, Dirs: fpart.DirsAll})
	got := entrySet(t, ourLines(parts, "."), "krsync")
	want := map[string]int64{".": 0, "real": 0, "real/sub": 0, "real/sub/f": 3, "link-to-dir": 0, "real/loop": 0, "root-link": 0}
	compareSets(t, got, prefixed(want, "."))
	for _, p := range parts {
		for _, e := range p.Entries {
			if (e.Path == "link-to-dir" || e.Path == "real/loop") && e.Dir {
				t.Errorf("%s reported as a directory", e.Path)
			}
		}
	}
	// A root given as a symlink is followed, as fts does for its arguments.
	parts, _ = walkAll(t, filepath.Join(root, "link-to-dir"), fpart.Options{MaxFiles: 100})
	compareSets(t, entrySet(t, ourLines(parts, "."), "krsync"), map[string]int64{"./sub/f": 3, "./loop": 0})
}

// TestDirCallbacks: Dir is called for every kept directory, the root as ".", parents
// first, and never for excluded ones.
func TestDirCallbacks(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, treeSpec{seed: 9, files: 50, dirs: 30, emptyDirs: 5, excluded: true})
	opts, err := fpart.ParseOptionString("-zz -x .zfs -x .snapshot* -x .ckpt")
	mustDo(t, err)
	opts.MaxFiles = 1000
	var dirs []string
	_, err = fpart.Walk(context.Background(), root, opts, fpart.Handler{Dir: func(rel string) error {
		dirs = append(dirs, rel)
		return nil
	}})
	mustDo(t, err)
	var want []string
	mustDo(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if n := d.Name(); n == ".zfs" || strings.HasPrefix(n, ".snapshot") || n == ".ckpt" {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, path)
		want = append(want, rel)
		return nil
	}))
	if dirs[0] != "." {
		t.Errorf("first Dir call %q, want the root %q", dirs[0], ".")
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		if parent := filepath.Dir(d); d != "." && !seen[parent] {
			t.Errorf("Dir(%q) before its parent", d)
		}
		seen[d] = true
	}
	slices.Sort(dirs)
	slices.Sort(want)
	if !slices.Equal(dirs, want) {
		t.Errorf("Dir calls %q\nwant %q", dirs, want)
	}
}

// TestBadRoots: a missing root and a file are errors, bad options are usage errors.
func TestBadRoots(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	mustDo(t, os.WriteFile(file, nil, 0o644))
	ok := fpart.Options{MaxFiles: 1}
	tests := []struct {
		name  string
		root  string
		opts  fpart.Options
		usage bool
	}{
		{"missing", filepath.Join(dir, "missing"), ok, false},
		{"file", file, ok, false},
		{"no mode", dir, fpart.Options{}, true},
		{"-n with -L", dir, fpart.Options{Parts: 2, Live: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fpart.Walk(context.Background(), tt.root, tt.opts, fpart.Handler{})
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, fpart.ErrUsage) != tt.usage {
				t.Errorf("err %v: usage error = %v, want %v", err, !tt.usage, tt.usage)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("err %q is not one line", err)
			}
		})
	}
}

// TestDeepPaths: paths longer than PATH_MAX (4096) are walked, as fts walks them.
func TestDeepPaths(t *testing.T) {
	root := t.TempDir()
	component := strings.Repeat("d", 200)
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	mustDo(t, err)
	rel := ""
	for range 30 { // 30 * 201 bytes: about 6,000
		mustDo(t, unix.Mkdirat(fd, component, 0o755))
		next, err := unix.Openat(fd, component, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		mustDo(t, err)
		unix.Close(fd)
		fd = next
		rel += component + "/"
	}
	file, err := unix.Openat(fd, "deep-file", unix.O_CREAT|unix.O_WRONLY, 0o644)
	mustDo(t, err)
	unix.Close(file)
	unix.Close(fd)
	var errs []string
	var parts []fpart.Partition
	sum, err := fpart.Walk(context.Background(), root, fpart.Options{Live: true, MaxFiles: 10}, fpart.Handler{
		Partition: func(p fpart.Partition) error { parts = append(parts, p); return nil },
		Error:     func(rel string, err error) { errs = append(errs, err.Error()) },
	})
	mustDo(t, err)
	if len(errs) > 0 || sum.Errors != 0 {
		t.Fatalf("errors: %q", errs)
	}
	if len(parts) != 1 || len(parts[0].Entries) != 1 || parts[0].Entries[0].Path != rel+"deep-file" {
		t.Fatalf("partitions %+v, want the deep file", parts)
	}
}

// TestSpread: with Options.Spread, live partitions start at MinSpreadFiles entries and grow
// with what was packed before them, never past -f; every entry lands once, hard links stay
// together, and the same tree gives the same partitions.
func TestSpread(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, treeSpec{seed: 12, files: 5000, dirs: 60, maxSize: 10_000, links: 40, symlinks: 5})
	want := expectedEntries(t, root, nil, nil)
	links := hardLinks(t, root)
	const maxFiles, spread = 400, 8
	opts := fpart.Options{Live: true, MaxFiles: maxFiles, Spread: spread}
	parts, _ := walkAll(t, root, opts)
	checkLinksTogether(t, links, parts)
	compareSets(t, entrySet(t, ourLines(parts, "."), "krsync"), prefixed(want, "."))
	var packed int64
	sawMax := false
	for i, p := range parts {
		limit := min(maxFiles, max(fpart.MinSpreadFiles, packed/spread))
		n := int64(len(p.Entries))
		// A hard-link group of up to 3 names may close a partition before its limit; none
		// may exceed it (the groups are smaller than MinSpreadFiles).
		if n > limit || (i < len(parts)-1 && n < limit-3) {
			t.Errorf("partition %d has %d entries after %d packed; want %d", i, n, packed, limit)
		}
		sawMax = sawMax || n == maxFiles
		packed += n
	}
	if len(parts[0].Entries) != fpart.MinSpreadFiles || !sawMax {
		t.Errorf("first partition %d entries, a full -f partition seen %v: want %d and true", len(parts[0].Entries), sawMax, fpart.MinSpreadFiles)
	}
	again, _ := walkAll(t, root, opts)
	if len(again) != len(parts) {
		t.Fatalf("second walk made %d partitions, first %d", len(again), len(parts))
	}
	for i := range parts {
		if string(parts[i].List()) != string(again[i].List()) {
			t.Fatalf("partition %d differs between two walks of the same tree", i)
		}
	}
}

// TestCompare: entries Handler.Compare's functions call unchanged go in no partition but to
// Handler.Unchanged, once each; everything else is partitioned as before, hard links are
// never asked about (a group stays whole), directories neither; and in live mode the few
// entries left still go out in several partitions while the walk goes (skip's span).
func TestCompare(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, treeSpec{seed: 21, files: 5000, dirs: 60, maxSize: 10_000, links: 40, symlinks: 30, emptyDirs: 5})
	want := expectedEntries(t, root, nil, nil)
	links := hardLinks(t, root)
	// Unchanged: all but about one in 10 regular files and symlinks, by a hash of the name
	// (the function's own decision, the same in every run of the seeded tree).
	isSame := func(name string) bool {
		h := fnv.New32a()
		h.Write([]byte(name))
		return h.Sum32()%10 != 0
	}
	for _, opts := range []fpart.Options{
		{Live: true, MaxFiles: 100, Spread: 8},
		{MaxFiles: 100},
	} {
		t.Run(fmt.Sprintf("live=%v", opts.Live), func(t *testing.T) {
			var mu sync.Mutex
			asked := map[string]bool{}
			var dirsAsked, done int
			var unchanged []string
			var parts []fpart.Partition
			sum, err := fpart.Walk(context.Background(), root, opts, fpart.Handler{
				Partition: func(p fpart.Partition) error { parts = append(parts, p); return nil },
				Compare: func(_ int, rel string) (fpart.SameFunc, func()) {
					mu.Lock()
					dirsAsked++
					mu.Unlock()
					return func(dirFD int, name string, st *unix.Stat_t) bool {
						var own unix.Stat_t
						if err := unix.Fstatat(dirFD, name, &own, unix.AT_SYMLINK_NOFOLLOW); err != nil || own.Ino != st.Ino {
							t.Errorf("asked about %s/%s with a descriptor that does not hold it", rel, name)
						}
						if st.Nlink > 1 || st.Mode&unix.S_IFMT == unix.S_IFDIR {
							t.Errorf("asked about %s/%s (mode %o, %d links)", rel, name, st.Mode, st.Nlink)
						}
						mu.Lock()
						defer mu.Unlock()
						key := path.Join(rel, name)
						if asked[key] {
							t.Errorf("asked twice about %s", key)
						}
						asked[key] = true
						return isSame(name)
					}, func() { mu.Lock(); done++; mu.Unlock() }
				},
				Unchanged: func(rel string, size int64) { unchanged = append(unchanged, rel) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if done != dirsAsked {
				t.Errorf("%d directories compared, %d done calls", dirsAsked, done)
			}
			checkLinksTogether(t, links, parts)
			got := entrySet(t, ourLines(parts, "."), "krsync")
			for _, rel := range unchanged {
				key := "./" + rel
				if _, dup := got[key]; dup {
					t.Errorf("%s both unchanged and in a partition", rel)
				}
				got[key] = want[rel]
			}
			compareSets(t, got, prefixed(want, "."))
			if int64(len(unchanged)) != sum.Unchanged || sum.Unchanged < int64(len(want))/2 {
				t.Errorf("Summary.Unchanged %d, Unchanged calls %d, of %d entries", sum.Unchanged, len(unchanged), len(want))
			}
			for _, p := range parts {
				for _, e := range p.Entries {
					if asked[e.Path] && isSame(path.Base(e.Path)) {
						t.Errorf("%s is unchanged but in partition %d", e.Path, p.Index)
					}
				}
			}
			sizes := []int{}
			for _, p := range parts {
				sizes = append(sizes, len(p.Entries))
			}
			t.Logf("%d of %d entries left out, partitions of %v entries", len(unchanged), len(want), sizes)
			if opts.Live && len(parts) < 5 {
				t.Errorf("live walk with %d of %d entries left: %d partitions; want them handed out as the walk goes", len(want)-len(unchanged), len(want), len(parts))
			}
		})
	}
}
