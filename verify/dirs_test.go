package verify_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/krsync/krsync/verify"
)

// runDirs compares src and dest as a distributed --verify does: every directory of the
// source (as a walk lists them, excluded ones too: Dirs must leave those out itself) in a
// call of its own, children before parents, and the hard links of all calls judged together.
func runDirs(t *testing.T, src, dest string, checksum bool, exclude ...string) ([]verify.Difference, verify.Summary) {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			dirs = append(dirs, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list the source's directories: %v", err)
	}
	slices.Reverse(dirs)
	var diffs []verify.Difference
	var links []verify.LinkName
	total := verify.Summary{ByKind: map[verify.Kind]int64{}}
	for _, dir := range dirs {
		res, err := verify.Dirs(context.Background(), verify.Config{
			Source: src, Dest: dest, Workers: 2, Checksum: checksum, Exclude: exclude,
			Report: func(d verify.Difference) error { diffs = append(diffs, d); return nil },
		}, []string{dir})
		if err != nil {
			t.Fatalf("verify.Dirs(%q): %v", dir, err)
		}
		if res.Summary.Dirs > 1 {
			t.Errorf("verify.Dirs(%q) read %d directories, want at most 1 (one level deep)", dir, res.Summary.Dirs)
		}
		total.Entries += res.Entries
		total.Dirs += res.Summary.Dirs
		total.ContentBytes += res.ContentBytes
		links = append(links, res.Links...)
	}
	diffs = append(diffs, verify.HardLinkDifferences(links)...)
	total.Differences = int64(len(diffs))
	return diffs, total
}

// ageDirs moves the mtime of every directory of root to a second long past, and returns
// root: rsync 3.5 leaves a directory's mtime alone when it differs from the copy's only
// below the second, as a tree made just before its copy does.
func ageDirs(t *testing.T, root string) string {
	t.Helper()
	var dirs []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	}))
	for _, d := range dirs {
		must(t, os.Chtimes(d, time.Unix(1e9, 0), time.Unix(1e9, 0)))
	}
	return root
}

// TestDirsSplitsHardLinksAcrossCalls regroups hard links whose names sit in different
// directories, hence in different calls of Dirs, and below a directory that exists in the
// destination only: Dirs must report what Run reports.
func TestDirsSplitsHardLinksAcrossCalls(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"a", "b", "c"} {
		must(t, os.Mkdir(filepath.Join(src, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(src, "a", "x"), []byte("linked"), 0o644))
	must(t, os.Link(filepath.Join(src, "a", "x"), filepath.Join(src, "b", "y")))
	must(t, os.WriteFile(filepath.Join(src, "c", "z"), []byte("linked"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "c", "w"), []byte("alone"), 0o644))
	dest := rsyncCopy(t, ageDirs(t, src))

	// In the copy: b/y leaves a/x's group for c/z's inode (same bytes, one more name for
	// c/z), and c/w gains a link in a directory the source does not have.
	keepParentTime(t, dest, "b/y", func(p string) error {
		if err := os.Remove(p); err != nil {
			return err
		}
		return os.Link(filepath.Join(dest, "c", "z"), p)
	})
	extra := filepath.Join(dest, "extra", "deep")
	must(t, os.MkdirAll(extra, 0o755))
	must(t, os.Link(filepath.Join(dest, "c", "w"), filepath.Join(extra, "w")))

	want, _ := runVerify(t, src, dest, true)
	wantKeys := keysOf(want)
	for _, k := range []diffKey{{"a/x", "hardlink"}, {"b/y", "hardlink"}, {"c/z", "hardlink"}, {"c/w", "hardlink"}, {"extra", "extra"}} {
		if !slices.Contains(wantKeys, k) {
			t.Fatalf("Run misses %v: %v (the test's premise)", k, wantKeys)
		}
	}
	got, _ := runDirs(t, src, dest, true)
	if gotKeys := keysOf(got); !slices.Equal(gotKeys, wantKeys) {
		t.Errorf("Dirs, one call per directory, reports %v; Run reports %v", gotKeys, wantKeys)
	}
}

// TestDirsReportsEachDifferenceOnce: a directory missing from the destination, and one that
// is a file there, are one difference each, reported by their parent's call, not by the
// calls that list them or their subdirectories.
func TestDirsReportsEachDifferenceOnce(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"gone/sub", "typed/sub"} {
		must(t, os.MkdirAll(filepath.Join(src, d), 0o755))
		must(t, os.WriteFile(filepath.Join(src, d, "f"), []byte("f"), 0o644))
	}
	dest := rsyncCopy(t, ageDirs(t, src))
	keepParentTime(t, dest, "gone", os.RemoveAll)
	keepParentTime(t, dest, "typed", func(p string) error {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		return os.WriteFile(p, nil, 0o644)
	})
	got, _ := runDirs(t, src, dest, false)
	want := sortedKeys([]diffKey{{"gone", "missing"}, {"typed", "type"}})
	if gotKeys := keysOf(got); !slices.Equal(gotKeys, want) {
		t.Errorf("Dirs reports %v, want %v", gotKeys, want)
	}
}
