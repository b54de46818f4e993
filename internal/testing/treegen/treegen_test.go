package treegen_test

import (
	"github.com/krsync/krsync/internal/testing/testbin"

	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

func generate(t *testing.T, spec treegen.Spec) (string, treegen.Summary) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	sum, err := treegen.Generate(root, spec)
	if err != nil {
		t.Fatalf("generate (seed %d): %v", spec.Seed, err)
	}
	return root, sum
}

// absLink is the one entry whose content depends on the root (an absolute symlink into the tree).
func absLink(rel string) bool { return rel == "hostile/links/abs-in-tree" }

func TestGenerateIsDeterministic(t *testing.T) {
	spec := treegen.Spec{Seed: 7, Files: 100, Hostile: true, BigFiles: 1, BigSize: 1 << 20, SparseSize: 1 << 20}
	a, sumA := generate(t, spec)
	b, sumB := generate(t, spec)
	if sumA.Files != sumB.Files || sumA.Bytes != sumB.Bytes {
		t.Errorf("summaries differ: %+v vs %+v", sumA, sumB)
	}
	opts := treecmp.Options{SymlinkTimes: true, Exclude: absLink}
	diffs, err := treecmp.Compare(a, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Errorf("same seed, different trees:\n%s", treecmp.Format(diffs, 20))
	}
	spec.Seed = 8
	c, _ := generate(t, spec)
	diffs, err = treecmp.Compare(a, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) == 0 {
		t.Errorf("seeds 7 and 8 gave the same tree")
	}
}

func TestGeneratePlainShape(t *testing.T) {
	tests := []struct {
		name string
		spec treegen.Spec
	}{
		{"small files", treegen.Spec{Seed: 1, Files: 1500}},
		{"tiny files, explicit fan-out and depth", treegen.Spec{Seed: 2, Files: 1000, FanOut: 3, Depth: 2, MaxSize: 64}},
		{"big files only", treegen.Spec{Seed: 3, BigFiles: 2, BigSize: 2 << 20}},
		{"sizes in a band", treegen.Spec{Seed: 4, Files: 200, MinSize: 100, MaxSize: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, sum := generate(t, tt.spec)
			var files int
			var bytes int64
			err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				files++
				bytes += info.Size()
				if info.Mode().Perm() != 0o644 {
					t.Errorf("%s: mode %v, want 0644 whatever the umask", path, info.Mode())
				}
				big := strings.HasPrefix(info.Name(), "big")
				max := tt.spec.MaxSize
				if max == 0 {
					max = treegen.DefaultMaxSize
				}
				if !big && (info.Size() < tt.spec.MinSize || info.Size() > max) {
					t.Errorf("%s: size %d outside [%d, %d]", path, info.Size(), tt.spec.MinSize, max)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.spec.Files + tt.spec.BigFiles; files != want || sum.Files != want {
				t.Errorf("found %d files, summary %d, want %d", files, sum.Files, want)
			}
			if bytes != sum.Bytes {
				t.Errorf("found %d bytes, summary says %d", bytes, sum.Bytes)
			}
		})
	}
}

func TestGenerateRefusesNonEmptyRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := treegen.Generate(root, treegen.Spec{Files: 1}); err == nil {
		t.Fatal("Generate wrote into a non-empty directory")
	}
}

// TestGenerateHostileCorners proves each promised corner case is really in the tree.
func TestGenerateHostileCorners(t *testing.T) {
	root, sum := generate(t, treegen.Spec{Seed: 11, Files: 50, Hostile: true, SparseSize: 4 << 20})
	type entry struct {
		rel  string
		info fs.FileInfo
		st   *syscall.Stat_t
	}
	var all []entry
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		all = append(all, entry{rel, info, info.Sys().(*syscall.Stat_t)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	any := func(pred func(e entry) bool) bool {
		for _, e := range all {
			if pred(e) {
				return true
			}
		}
		return false
	}
	name := func(e entry) string { return filepath.Base(e.rel) }
	isRoot := os.Geteuid() == 0
	link := func(e entry) string {
		target, _ := os.Readlink(filepath.Join(root, e.rel))
		return target
	}
	now := time.Now().Add(-time.Hour)
	tests := []struct {
		name     string
		needRoot bool
		has      func(e entry) bool
	}{
		{"name with space", false, func(e entry) bool { return strings.Contains(name(e), " ") }},
		{"name with newline", false, func(e entry) bool { return strings.Contains(name(e), "\n") }},
		{"name with tab", false, func(e entry) bool { return strings.Contains(name(e), "\t") }},
		{"name with leading dash", false, func(e entry) bool { return strings.HasPrefix(name(e), "-") }},
		{"name of invalid UTF-8", false, func(e entry) bool { return !utf8.ValidString(name(e)) }},
		{"name of 255 bytes", false, func(e entry) bool { return len(name(e)) == 255 }},
		{"path over 1000 bytes", false, func(e entry) bool { return len(e.rel) > 1000 }},
		{"path of over 60 levels", false, func(e entry) bool { return strings.Count(e.rel, "/") > 60 }},
		{"relative symlink", false, func(e entry) bool { return e.info.Mode()&fs.ModeSymlink != 0 && strings.HasPrefix(link(e), "../") }},
		{"absolute symlink", false, func(e entry) bool { return e.info.Mode()&fs.ModeSymlink != 0 && filepath.IsAbs(link(e)) }},
		{"dangling symlink", false, func(e entry) bool {
			_, err := os.Stat(filepath.Join(root, e.rel))
			return e.info.Mode()&fs.ModeSymlink != 0 && err != nil
		}},
		{"symlink out of the tree", false, func(e entry) bool { return strings.Count(link(e), "../") > 8 }},
		{"hard link group of 6 names", false, func(e entry) bool { return e.info.Mode().IsRegular() && e.st.Nlink == 6 }},
		{"empty directory", false, func(e entry) bool {
			entries, _ := os.ReadDir(filepath.Join(root, e.rel))
			return e.info.IsDir() && len(entries) == 0
		}},
		{"sparse file", false, func(e entry) bool { return e.info.Mode().IsRegular() && e.st.Blocks*512 < e.st.Size/2 }},
		{"file mode 000", false, func(e entry) bool { return e.info.Mode().IsRegular() && e.st.Mode&0o7777 == 0 }},
		{"file mode 777", false, func(e entry) bool { return e.info.Mode().IsRegular() && e.st.Mode&0o7777 == 0o777 }},
		{"setuid file", false, func(e entry) bool { return e.info.Mode().IsRegular() && e.st.Mode&syscall.S_ISUID != 0 }},
		{"setgid directory", false, func(e entry) bool { return e.info.IsDir() && e.st.Mode&syscall.S_ISGID != 0 }},
		{"sticky directory", false, func(e entry) bool { return e.info.IsDir() && e.st.Mode&syscall.S_ISVTX != 0 }},
		{"directory mode 000", true, func(e entry) bool { return e.info.IsDir() && e.st.Mode&0o7777 == 0 }},
		{"foreign numeric owner", true, func(e entry) bool { return e.st.Uid == 123456 && e.st.Gid == 654321 }},
		{"foreign owner on a symlink", true, func(e entry) bool { return e.info.Mode()&fs.ModeSymlink != 0 && e.st.Uid == 4321 }},
		{"setuid file with a foreign owner", true, func(e entry) bool { return e.st.Mode&syscall.S_ISUID != 0 && e.st.Uid == 1777 }},
		{"zero-byte file", false, func(e entry) bool { return e.info.Mode().IsRegular() && e.info.Size() == 0 }},
		{"fifo", false, func(e entry) bool { return e.info.Mode()&fs.ModeNamedPipe != 0 }},
		{"socket", false, func(e entry) bool { return e.info.Mode()&fs.ModeSocket != 0 }},
		{"directory with an old mtime", false, func(e entry) bool { return e.info.IsDir() && e.info.ModTime().Before(now) }},
		{"mtime with nanoseconds", false, func(e entry) bool { return e.info.ModTime().Nanosecond() != 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && !isRoot {
				t.Skip("needs root")
			}
			if !any(tt.has) {
				t.Errorf("no entry in the hostile tree (summary %+v)", sum)
			}
		})
	}
	// Every directory has an old mtime: times were set after the children were created.
	for _, e := range all {
		if e.info.IsDir() && !e.info.ModTime().Before(now) {
			t.Errorf("directory %q has mtime %v: set before its children were created", e.rel, e.info.ModTime())
		}
	}
}

// TestGenerateRsyncRoundTrip checks that the reference rsync copies a hostile tree to
// something the comparator finds equal, and that rsync itself then sees nothing to do.
func TestGenerateRsyncRoundTrip(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, _ := generate(t, treegen.Spec{Seed: 12, Files: 100, Hostile: true, BigFiles: 1, BigSize: 3 << 20, SparseSize: 2 << 20})
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command(rsync, "-aH", "--numeric-ids", src+"/", dst+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	diffs, err := treecmp.Compare(src, dst, treecmp.Options{SymlinkTimes: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Errorf("rsync -aH copy differs:\n%s", treecmp.Format(diffs, 30))
	}
	out, err := exec.Command(rsync, "-aHn", "--numeric-ids", "--delete", "--itemize-changes", src+"/", dst+"/").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("rsync -n sees changes (%v):\n%s", err, out)
	}
}

func TestRandomTreeIsDeterministicAndHostileAtTheTop(t *testing.T) {
	spec := treegen.RandomSpec{Seed: 77, Entries: 400}
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, root := range []string{a, b} {
		if _, err := treegen.Random(root, spec); err != nil {
			t.Fatal(err)
		}
	}
	// Absolute symlink targets do not depend on the root in a random tree: all must match.
	if diffs, err := treecmp.Compare(a, b, treecmp.Options{SymlinkTimes: true}); err != nil || len(diffs) > 0 {
		t.Fatalf("same seed, different trees (%v):\n%s", err, treecmp.Format(diffs, 20))
	}
	tree, err := treecmp.Scan(a, treecmp.Options{SkipContent: true})
	if err != nil {
		t.Fatal(err)
	}
	var topHostile, links, fifos, maxDepth int
	for rel, e := range tree.Entries {
		if !strings.Contains(rel, "/") && rel != "." && strings.ContainsAny(rel[:1], "#;- \n") {
			topHostile++
		}
		if e.LinkGroup != "" {
			links++
		}
		if e.Type == os.ModeNamedPipe {
			fifos++
		}
		maxDepth = max(maxDepth, strings.Count(rel, "/"))
	}
	for _, rel := range []string{"#top", ";semi", "#dir/inner", "--delete/#x"} {
		if _, ok := tree.Entries[rel]; !ok {
			t.Errorf("%q is missing", rel)
		}
	}
	if topHostile < 5 || links == 0 || fifos == 0 || maxDepth < 3 {
		t.Errorf("tree too tame: %d hostile top-level names, %d hard-linked names, %d FIFOs, depth %d", topHostile, links, fifos, maxDepth)
	}
}
