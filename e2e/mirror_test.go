package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// The --mirror tests: the destination ends equal to the source (an independent comparator
// and krsync verify say so), what fpart's -x excludes is neither copied nor deleted, a name
// the source gains during the run is never deleted, and nothing behind a symlink of the
// destination is touched.

// mirrorExclude is the walk's exclusion of the mirror tests, and keptName's pattern.
const mirrorExclude = "-zz -x *.keep"

// excludedKeep is treecmp's view of mirrorExclude: a leaf name ending in ".keep" (fpart's
// FNM_PERIOD: "*" does not match a leading '.').
func excludedKeep(rel string) bool {
	base := path.Base(rel)
	return strings.HasSuffix(base, ".keep") && !strings.HasPrefix(base, ".")
}

// treeEntry is one entry of a tree as mutateSource sees it.
type treeEntry struct {
	rel  string
	mode fs.FileMode
}

// listTree lists every entry below root (not root itself), sorted by path.
func listTree(t *testing.T, root string) []treeEntry {
	t.Helper()
	var out []treeEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, treeEntry{rel: filepath.ToSlash(rel), mode: d.Type()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// victims hands out entries of a tree for mutations, none inside or above another one
// already handed out, so that the mutations do not undo each other.
type victims struct {
	entries []treeEntry
	used    []string
}

func related(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// take returns the first (or, with last, the last) entry that ok accepts.
func (v *victims) take(t *testing.T, what string, last bool, ok func(e treeEntry) bool) treeEntry {
	t.Helper()
	order := slices.Clone(v.entries)
	if last {
		slices.Reverse(order)
	}
	for _, e := range order {
		if !ok(e) || excludedKeep(e.rel) || slices.ContainsFunc(v.used, func(u string) bool { return related(u, e.rel) }) {
			continue
		}
		v.used = append(v.used, e.rel)
		return e
	}
	t.Fatalf("the tree has no entry for %s", what)
	return treeEntry{}
}

func isFile(e treeEntry) bool    { return e.mode.IsRegular() }
func isDir(e treeEntry) bool     { return e.mode.IsDir() }
func isSymlink(e treeEntry) bool { return e.mode&fs.ModeSymlink != 0 }
func topLevel(e treeEntry) bool  { return !strings.Contains(e.rel, "/") }
func deep(e treeEntry) bool      { return strings.Count(e.rel, "/") >= 2 }

// nonEmptyDir accepts a directory that holds something.
func nonEmptyDir(root string) func(treeEntry) bool {
	return func(e treeEntry) bool {
		if !isDir(e) {
			return false
		}
		names, err := os.ReadDir(filepath.Join(root, e.rel))
		return err == nil && len(names) > 0
	}
}

// mutateSource changes a synced source in every way --mirror must follow, and returns what
// it did, for the log.
func mutateSource(t *testing.T, src string) []string {
	t.Helper()
	v := &victims{entries: listTree(t, src)}
	var did []string
	note := func(format string, args ...any) { did = append(did, fmt.Sprintf(format, args...)) }
	at := func(rel string) string { return filepath.Join(src, filepath.FromSlash(rel)) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	e := v.take(t, "a top-level file to delete", false, func(e treeEntry) bool { return topLevel(e) && isFile(e) })
	must(os.Remove(at(e.rel)))
	note("deleted top-level file %q", e.rel)
	e = v.take(t, "a top-level directory to delete", true, func(e treeEntry) bool { return topLevel(e) && nonEmptyDir(src)(e) })
	must(os.RemoveAll(at(e.rel)))
	note("deleted top-level directory %q", e.rel)
	e = v.take(t, "a deep file to delete", true, func(e treeEntry) bool { return deep(e) && !isDir(e) })
	must(os.Remove(at(e.rel)))
	note("deleted deep entry %q", e.rel)

	e = v.take(t, "a file to rename", false, isFile)
	must(os.Rename(at(e.rel), at(e.rel)+".renamed"))
	note("renamed file %q", e.rel)
	e = v.take(t, "a directory to rename", false, nonEmptyDir(src))
	must(os.Rename(at(e.rel), at(e.rel)+"-renamed"))
	note("renamed directory %q", e.rel)

	e = v.take(t, "a file to turn into a directory", true, isFile)
	must(os.Remove(at(e.rel)))
	must(os.Mkdir(at(e.rel), 0o755))
	must(os.WriteFile(at(e.rel)+"/inner", []byte("was a file"), 0o644))
	note("file -> directory %q", e.rel)
	e = v.take(t, "a directory to turn into a file", false, nonEmptyDir(src))
	must(os.RemoveAll(at(e.rel)))
	must(os.WriteFile(at(e.rel), []byte("was a directory"), 0o644))
	note("directory -> file %q", e.rel)
	e = v.take(t, "a directory to turn into a symlink", true, nonEmptyDir(src))
	must(os.RemoveAll(at(e.rel)))
	must(os.Symlink("../nowhere", at(e.rel)))
	note("directory -> symlink %q", e.rel)
	e = v.take(t, "a symlink to turn into a file", false, isSymlink)
	must(os.Remove(at(e.rel)))
	must(os.WriteFile(at(e.rel), []byte("was a symlink"), 0o600))
	note("symlink -> file %q", e.rel)

	e = v.take(t, "a file to link again", false, isFile)
	must(os.Link(at(e.rel), at(e.rel)+".hardlink"))
	note("new hard link to %q", e.rel)
	e = v.take(t, "a file to chmod", true, isFile)
	must(os.Chmod(at(e.rel), 0o640))
	note("chmod %q", e.rel)
	if os.Geteuid() == 0 {
		e = v.take(t, "an entry to chown", false, func(e treeEntry) bool { return !isDir(e) })
		must(os.Lchown(at(e.rel), 4321, 8765))
		note("chown %q", e.rel)
	}
	// Excluded in the source: never copied.
	must(os.WriteFile(filepath.Join(src, "source-only.keep"), []byte("excluded"), 0o644))
	return did
}

// plantExcluded puts excluded files in the destination, at the top and deep in a directory
// the source keeps, and returns them with their contents.
func plantExcluded(t *testing.T, src, dest string) map[string]string {
	t.Helper()
	planted := map[string]string{"x.keep": "top"}
	for _, e := range listTree(t, src) {
		if st, err := os.Lstat(filepath.Join(dest, filepath.FromSlash(e.rel))); err != nil || !st.IsDir() {
			continue // a directory of both trees
		}
		if deep(e) && isDir(e) && !excludedKeep(e.rel) {
			planted[e.rel+"/y.keep"] = "deep"
			break
		}
	}
	for rel, content := range planted {
		if err := os.WriteFile(filepath.Join(dest, filepath.FromSlash(rel)), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return planted
}

func requirePlanted(t *testing.T, dest string, planted map[string]string) {
	t.Helper()
	for rel, content := range planted {
		got, err := os.ReadFile(filepath.Join(dest, filepath.FromSlash(rel)))
		if err != nil || string(got) != content {
			t.Errorf("excluded destination file %q: %q, %v; want it untouched (%q)", rel, got, err, content)
		}
	}
}

// compareMirror fails unless dest equals src except for the excluded paths.
func compareMirror(t *testing.T, src, dest string) {
	t.Helper()
	diffs, err := treecmp.Compare(src, dest, treecmp.Options{SymlinkTimes: true, Exclude: excludedKeep})
	if err != nil {
		t.Fatalf("compare: %v", err)
	}
	if len(diffs) > 0 {
		t.Errorf("%d differences after --mirror:\n%s", len(diffs), treecmp.Format(diffs, 40))
	}
}

// TestLocalMirrorMutatedTree is the acceptance test of --mirror: a hostile random tree is
// synced, the source mutated (deletions at the top and deep, renames, type changes both
// ways, new hard links, modes, owners) and excluded files planted in the destination; a dry
// run lists the deletions and changes nothing; the mirror run then ends equal (treecmp and
// krsync verify), with the excluded files untouched.
func TestLocalMirrorMutatedTree(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	for _, seed := range []uint64{11, 12} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			w := newLocalWorld(t)
			sum, err := treegen.Random(w.src, treegen.RandomSpec{Seed: seed, Entries: 300})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("seed %d: %d files, %d dirs, %d symlinks %v", seed, sum.Files, sum.Dirs, sum.Symlinks, sum.Notes)
			stateDir := filepath.Join(t.TempDir(), "state")
			args := []string{"--source", w.src, "--dest", w.dest, "--workers", "3", "--files-per-partition", "17",
				"--fpart-opts", mirrorExclude, "--state-dir", stateDir}
			syncLocal(t, w, runOptions{}, args...)
			compareMirror(t, w.src, w.dest)

			for _, m := range mutateSource(t, w.src) {
				t.Log(m)
			}
			planted := plantExcluded(t, w.src, w.dest)

			before := snapshotTree(t, w.dest)
			dry := syncLocal(t, w, runOptions{}, append(args, "--mirror", "--dry-run")...)
			requireUnchanged(t, before, "the destination after --mirror --dry-run")
			wouldDelete := 0
			records, _ := logLines(dry.stderr)
			for _, r := range records {
				if r["message"] == "mirror: would delete" {
					wouldDelete++
				}
			}
			summary := summaryOf(t, dry)
			if wouldDelete == 0 || summaryInt(t, summary, "deleted") != int64(wouldDelete) {
				t.Errorf("dry run: %d \"would delete\" lines, summary deleted=%d; want the same, not 0",
					wouldDelete, summaryInt(t, summary, "deleted"))
			}

			run := syncLocal(t, w, runOptions{}, append(args, "--mirror")...)
			if got := summaryInt(t, summaryOf(t, run), "deleted"); got != int64(wouldDelete) {
				t.Errorf("the mirror run deleted %d entries, the dry run listed %d", got, wouldDelete)
			}
			compareMirror(t, w.src, w.dest)
			requirePlanted(t, w.dest, planted)
			if _, err := os.Lstat(filepath.Join(w.dest, "source-only.keep")); err == nil {
				t.Error("an excluded source file was copied")
			}
			verified := runKrsync(t, runOptions{}, "--log-format=json", "verify", "--source", w.src, "--dest", w.dest, "--exclude", "*.keep")
			if verified.code != 0 {
				t.Errorf("krsync verify exited %d:\n%s", verified.code, truncateLines(verified.stderr, 40))
			}
			if left := w.leftovers(t); len(left) > 0 {
				t.Errorf("state left behind: %q", left)
			}
			if t.Failed() {
				t.Logf("reproduce with seed %d", seed)
			}
		})
	}
}

// TestLocalMirrorKeepsWhatTheSourceGains: names that exist only in the destination when the
// run starts, and that the source gains during the run (created by an rsync wrapper before
// the first rsync, after the walk listed their directory), survive --mirror. One worker
// makes the order certain: the file partitions, then the prune leases.
func TestLocalMirrorKeepsWhatTheSourceGains(t *testing.T) {
	t.Parallel()
	rsync := testbin.Rsync(t)
	w := newLocalWorld(t)
	writeFile(t, filepath.Join(w.src, "d/sub/a"), "a", 0o644)
	writeFile(t, filepath.Join(w.src, "top/b"), "b", 0o644)
	stateDir := filepath.Join(t.TempDir(), "state")
	args := []string{"--source", w.src, "--dest", w.dest, "--workers", "1", "--state-dir", stateDir}
	syncLocal(t, w, runOptions{}, args...)

	// A changed file, so that the file partition runs rsync (unchanged entries are left out
	// before rsync, and with nothing left rsync does not run).
	writeFile(t, filepath.Join(w.src, "top/changed"), "changed", 0o644)
	gained := []string{"gained-top", "d/gained", "d/sub/gained", "d/sub/gained-dir"}
	for _, rel := range gained {
		writeFile(t, filepath.Join(w.dest, rel), "dest only, before the run", 0o644)
	}
	writeFile(t, filepath.Join(w.dest, "d/sub/extraneous"), "dest only", 0o644)

	dir := t.TempDir()
	done := filepath.Join(dir, "created")
	var create strings.Builder
	for _, rel := range gained {
		if strings.HasSuffix(rel, "-dir") {
			fmt.Fprintf(&create, "mkdir '%s'\n", filepath.Join(w.src, rel))
			continue
		}
		fmt.Fprintf(&create, "echo new > '%s'\n", filepath.Join(w.src, rel))
	}
	wrapper := filepath.Join(dir, "rsync-gains")
	script := fmt.Sprintf("#!/bin/sh\nif [ ! -e '%s' ]; then\n%s: > '%s'\nfi\nexec '%s' \"$@\"\n", done, create.String(), done, rsync)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	run := syncLocal(t, w, runOptions{}, append(args, "--mirror", "--rsync", wrapper)...)
	if _, err := os.Stat(done); err != nil {
		t.Fatalf("the wrapper did not run: %v", err)
	}
	for _, rel := range gained {
		if _, err := os.Lstat(filepath.Join(w.dest, rel)); err != nil {
			t.Errorf("%q, gained by the source during the run, was deleted from the destination: %v", rel, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(w.dest, "d/sub/extraneous")); err == nil {
		t.Error("d/sub/extraneous, in the destination only, was not deleted")
	}
	if got := summaryInt(t, summaryOf(t, run), "deleted"); got != 1 {
		t.Errorf("deleted %d entries, want 1", got)
	}
}

// TestLocalMirrorNeverFollowsDestinationSymlinks: symlinks of the destination that point out
// of it (to a directory and to a file), one where the source has a directory and one inside
// a directory that the source lost, are deleted as links; what they point to is untouched.
func TestLocalMirrorNeverFollowsDestinationSymlinks(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	w := newLocalWorld(t)
	outside := filepath.Join(w.world, "outside")
	writeFile(t, filepath.Join(outside, "secret"), "s", 0o644)
	writeFile(t, filepath.Join(outside, "sub/secret"), "s", 0o644)
	writeFile(t, filepath.Join(w.src, "a/f"), "f", 0o644)
	writeFile(t, filepath.Join(w.src, "b/g"), "g", 0o644)
	stateDir := filepath.Join(t.TempDir(), "state")
	args := []string{"--source", w.src, "--dest", w.dest, "--workers", "2", "--state-dir", stateDir, "--mirror"}
	syncLocal(t, w, runOptions{}, args...)

	for link, target := range map[string]string{
		"outlink":      outside,
		"a/dirlink":    outside,
		"a/filelink":   filepath.Join(outside, "secret"),
		"gone/sublink": filepath.Join(outside, "sub"),
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(w.dest, link)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(w.dest, link)); err != nil {
			t.Fatal(err)
		}
	}
	// Where the source has the directory b, the destination has a symlink out of it.
	if err := os.RemoveAll(filepath.Join(w.dest, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(w.dest, "b")); err != nil {
		t.Fatal(err)
	}
	before := snapshotTree(t, outside)
	syncLocal(t, w, runOptions{}, args...)
	requireUnchanged(t, before, "the directory the destination's symlinks point to")
	compareTrees(t, w.src, w.dest)
}

// TestCoordinatorMirror: `krsync coordinator --mirror` and two `krsync worker` processes end
// with a destination equal to the mutated source.
func TestCoordinatorMirror(t *testing.T) {
	t.Parallel()
	rsync := testbin.Rsync(t)
	w := newLocalWorld(t)
	if _, err := treegen.Random(w.src, treegen.RandomSpec{Seed: 21, Entries: 250}); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	syncLocal(t, w, runOptions{}, "--source", w.src, "--dest", w.dest, "--fpart-opts", mirrorExclude, "--state-dir", stateDir)
	for _, m := range mutateSource(t, w.src) {
		t.Log(m)
	}
	planted := plantExcluded(t, w.src, w.dest)

	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, faultToken+"\n", 0o600)
	addr := freeLoopbackAddr(t)
	bin := buildKrsync(t)
	coord := startProcess(t, "coordinator", bin, "--log-format=json", "coordinator", "--mirror",
		"--source", w.src, "--dest", w.dest, "--listen", addr, "--fpart-opts", "-f 20 "+mirrorExclude,
		"--lease-ttl=5s", "--linger=3s", "--token-file", tokenFile, "--state-dir", stateDir)
	var workers []*process
	for _, name := range []string{"worker-1", "worker-2"} {
		workers = append(workers, startProcess(t, name, bin, "--log-format=json", "worker", "--coordinator", "http://"+addr,
			"--source", w.src, "--dest", w.dest, "--token-file", tokenFile, "--name", name, "--rsync", rsync))
	}
	run := distributedRun{coordinator: coord}.wait(t, workers...)
	if run.code != 0 {
		t.Fatalf("coordinator exited %d:\n%s", run.code, truncateLines(run.stderr, 60))
	}
	if !strings.Contains(finalLine(run.stderr), "deleted") {
		t.Errorf("the coordinator's summary does not count deletions: %s", finalLine(run.stderr))
	}
	compareMirror(t, w.src, w.dest)
	requirePlanted(t, w.dest, planted)
}
