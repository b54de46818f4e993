package slowfs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/bench/slowfs"
	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// requireFUSE skips the test (fails it under CI=true) where this machine cannot mount FUSE.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testbin.SkipOrFail(t, "no /dev/fuse, FUSE cannot be mounted here: "+err.Error())
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		testbin.SkipOrFail(t, "fusermount3 not found on PATH (apt-get install fuse3, or scripts/install-deps): "+err.Error())
	}
}

// mount mirrors backing through slowfs for the duration of the test.
func mount(t *testing.T, backing string, cfg slowfs.Config) *slowfs.FS {
	t.Helper()
	requireFUSE(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := slowfs.Mount(backing, mnt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return f
}

func TestReadingThroughTheMountShowsTheBackingTree(t *testing.T) {
	backing := filepath.Join(t.TempDir(), "tree")
	spec := treegen.Spec{Seed: 13, Files: 300, Hostile: true}
	if _, err := treegen.Generate(backing, spec); err != nil {
		t.Fatalf("generate (seed %d): %v", spec.Seed, err)
	}
	f := mount(t, backing, slowfs.Config{})
	// Access times first: hashing the contents below reads the files and may move them.
	// The absolute symlink resolves outside the mount, so it is left to treecmp.
	checkAtimes(t, backing, f.Mountpoint)
	if err := treecmp.Equal(backing, f.Mountpoint, treecmp.Options{SymlinkTimes: true}); err != nil {
		t.Fatalf("seed %d: %v", spec.Seed, err)
	}
}

func TestWritingThroughTheMountKeepsWhatRsyncCopies(t *testing.T) {
	rsync := testbin.Program(t, "rsync")
	src := filepath.Join(t.TempDir(), "src")
	spec := treegen.Spec{Seed: 14, Files: 300, Hostile: true}
	if _, err := treegen.Generate(src, spec); err != nil {
		t.Fatalf("generate (seed %d): %v", spec.Seed, err)
	}
	backing := t.TempDir()
	f := mount(t, backing, slowfs.Config{})
	out, err := exec.Command(rsync, "-aH", "--numeric-ids", src+"/", f.Mountpoint+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("rsync into the mount: %v\n%s", err, out)
	}
	opts := treecmp.Options{SymlinkTimes: true, Exclude: func(rel string) bool {
		return rel == "hostile/links/abs-in-tree" // its target names the source root
	}}
	if err := treecmp.Equal(src, backing, opts); err != nil {
		t.Fatalf("seed %d: %v", spec.Seed, err)
	}
}

func TestTimesSetThroughTheMountReachTheBackingFile(t *testing.T) {
	backing := t.TempDir()
	if err := os.WriteFile(filepath.Join(backing, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := mount(t, backing, slowfs.Config{})
	atime, mtime := time.Unix(1_000_000_000, 123_456_789), time.Unix(2_000_000_000, 987_654_321)
	if err := os.Chtimes(filepath.Join(f.Mountpoint, "file"), atime, mtime); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(backing, "file"), &st); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(st.Atim.Unix()); !got.Equal(atime) {
		t.Errorf("backing atime %v; want %v", got, atime)
	}
	if got := time.Unix(st.Mtim.Unix()); !got.Equal(mtime) {
		t.Errorf("backing mtime %v; want %v", got, mtime)
	}
}

// checkAtimes compares the access times of the regular files in two trees.
func checkAtimes(t *testing.T, a, b string) {
	t.Helper()
	checked := 0
	err := filepath.WalkDir(a, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(a, path)
		var sa, sb syscall.Stat_t
		if err := syscall.Lstat(path, &sa); err != nil {
			return err
		}
		if err := syscall.Lstat(filepath.Join(b, rel), &sb); err != nil {
			return err
		}
		if sa.Atim != sb.Atim {
			t.Errorf("%s: atime %v in %s, %v in %s", rel, time.Unix(sa.Atim.Unix()), a, time.Unix(sb.Atim.Unix()), b)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no regular files to compare access times of")
	}
}

// TestEveryMetadataRequestIsCountedAndDelayed runs one kind of operation at a time and
// checks that the request it causes was counted exactly once (the kernel adds lookups and
// getattrs of its own, so those are checked at least), and that the handlers slept the
// delay for every metadata request: counted operations times the delay, not wall time.
func TestEveryMetadataRequestIsCountedAndDelayed(t *testing.T) {
	const delay = 2 * time.Millisecond
	backing := t.TempDir()
	if err := os.WriteFile(filepath.Join(backing, "file"), []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := mount(t, backing, slowfs.Config{Delay: delay, DataDelayPerMiB: delay})
	at := func(rel string) string { return filepath.Join(f.Mountpoint, rel) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name    string
		do      func()
		exactly slowfs.Op
		atLeast []slowfs.Op
	}{
		{"lstat", func() { _, err := os.Lstat(at("file")); must(err) }, slowfs.OpLookup, nil},
		{"open", func() { fh, err := os.Open(at("file")); must(err); must(fh.Close()) }, slowfs.OpOpen, []slowfs.Op{slowfs.OpLookup}},
		{"create", func() { fh, err := os.Create(at("new")); must(err); must(fh.Close()) }, slowfs.OpCreate, []slowfs.Op{slowfs.OpLookup}},
		{"mkdir", func() { must(os.Mkdir(at("dir"), 0o755)) }, slowfs.OpMkdir, []slowfs.Op{slowfs.OpLookup}},
		{"chmod", func() { must(os.Chmod(at("new"), 0o600)) }, slowfs.OpSetattr, []slowfs.Op{slowfs.OpLookup}},
		{"readdir", func() { _, err := os.ReadDir(at("dir")); must(err) }, slowfs.OpOpendir, []slowfs.Op{slowfs.OpReaddir}},
		{"rename", func() { must(os.Rename(at("new"), at("dir/renamed"))) }, slowfs.OpRename, []slowfs.Op{slowfs.OpLookup}},
		{"link", func() { must(os.Link(at("dir/renamed"), at("hard"))) }, slowfs.OpLink, []slowfs.Op{slowfs.OpLookup}},
		{"symlink", func() { must(os.Symlink("file", at("sym"))) }, slowfs.OpSymlink, []slowfs.Op{slowfs.OpLookup}},
		{"readlink", func() { _, err := os.Readlink(at("sym")); must(err) }, slowfs.OpReadlink, []slowfs.Op{slowfs.OpLookup}},
		{"mkfifo", func() { must(syscall.Mkfifo(at("fifo"), 0o644)) }, slowfs.OpMknod, []slowfs.Op{slowfs.OpLookup}},
		{"unlink", func() { must(os.Remove(at("hard"))) }, slowfs.OpUnlink, []slowfs.Op{slowfs.OpLookup}},
		{"rmdir", func() { must(os.Remove(at("dir/renamed"))); must(os.Remove(at("dir"))) }, slowfs.OpRmdir, []slowfs.Op{slowfs.OpUnlink}},
		{"write 1 MiB", func() { must(os.WriteFile(at("big"), make([]byte, 1<<20), 0o644)) }, slowfs.OpCreate, []slowfs.Op{slowfs.OpWrite}},
	}
	for _, step := range steps {
		before := f.Counts()
		step.do()
		got := f.Counts().Sub(before)
		if n := got.Get(step.exactly); n != 1 {
			t.Errorf("%s: %d %s requests; want 1 (all counts: %v)", step.name, n, step.exactly, got.NonZero())
		}
		for _, op := range step.atLeast {
			if got.Get(op) == 0 {
				t.Errorf("%s: no %s request counted (all counts: %v)", step.name, op, got.NonZero())
			}
		}
	}
	total := f.Counts()
	if total.BytesWritten < 1<<20 {
		t.Errorf("%d bytes written counted; want at least 1 MiB", total.BytesWritten)
	}
	// Every metadata request slept delay, and the 1 MiB written slept delay more.
	want := time.Duration(total.Metadata())*delay + delay
	if slept := time.Duration(total.SleptNanos); slept < want {
		t.Errorf("handlers slept %v for %d metadata requests and 1 MiB; want at least %v", slept, total.Metadata(), want)
	}
}

// TestVanishListsButCannotBeFound: a name Config.Vanish picks is in the directory listing
// and gone when looked up, at the top and deeper; the others are untouched.
func TestVanishListsButCannotBeFound(t *testing.T) {
	backing := t.TempDir()
	for _, p := range []string{"vanish-top", "keep", "d/vanish-deep", "d/keep"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(backing, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(backing, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := mount(t, backing, slowfs.Config{Vanish: func(name string) bool { return len(name) > 7 && name[:7] == "vanish-" }})
	for _, dir := range []string{".", "d"} {
		entries, err := os.ReadDir(filepath.Join(f.Mountpoint, dir))
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, e := range entries {
			listed[e.Name()] = true
		}
		if !listed["keep"] || (!listed["vanish-top"] && !listed["vanish-deep"]) {
			t.Errorf("%s lists %v; want keep and the vanishing name", dir, listed)
		}
	}
	for p, want := range map[string]error{"vanish-top": os.ErrNotExist, "d/vanish-deep": os.ErrNotExist, "keep": nil, "d/keep": nil} {
		if _, err := os.Lstat(filepath.Join(f.Mountpoint, p)); (want == nil) != (err == nil) || (want != nil && !os.IsNotExist(err)) {
			t.Errorf("lstat %s = %v; want %v", p, err, want)
		}
	}
}
