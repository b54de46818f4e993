package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// Issue 6, item 4: hostile trees and faults that a real volume brings, seen from the
// command line: unreadable entries, a full destination, a destination holding symlinks
// that point elsewhere, and a source that changes under the walk.

// plainTree writes a small world-readable tree (dirs ., d00, d01, d02).
func plainTree(t *testing.T, dir string, seed uint64, files int) {
	t.Helper()
	if _, err := treegen.Generate(dir, treegen.Spec{Seed: seed, Files: files, FanOut: 3, Depth: 1}); err != nil {
		t.Fatalf("generate (seed %d): %v", seed, err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// diffsExcept returns the differences whose kind is not ignored and whose path does not
// contain any of the given fragments.
func diffsExcept(diffs []treecmp.Difference, kinds []treecmp.Kind, fragments ...string) []treecmp.Difference {
	var kept []treecmp.Difference
next:
	for _, d := range diffs {
		for _, k := range kinds {
			if d.Kind == k {
				continue next
			}
		}
		for _, f := range fragments {
			if strings.Contains(d.Path, f) {
				continue next
			}
		}
		kept = append(kept, d)
	}
	return kept
}

// TestLocalUnreadableEntries runs krsync as an unprivileged user over a tree with a file and
// a directory it may not read: the rest is copied, the exit code says the copy is
// incomplete, the failed paths are named, and a rerun after fixing the permissions completes.
func TestLocalUnreadableEntries(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files an unprivileged krsync cannot read")
	}
	w := newLocalWorld(t)
	plainTree(t, w.src, 4001, 120)
	secretFile := filepath.Join(w.src, "d00", "secret-file")
	secretDir := filepath.Join(w.src, "secret-dir")
	writeFile(t, secretFile, "top secret", 0o600)
	writeFile(t, filepath.Join(secretDir, "inner", "file"), "inner secret", 0o644)
	chmod(t, secretDir, 0o700)
	mkdir(t, w.dest)
	for _, dir := range []string{w.dest, w.stateHome} {
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	opts := runOptions{env: w.env(), attr: unprivileged()}
	args := []string{"--log-format=json", "local", "--source", w.src, "--dest", w.dest, "--workers", "2"}

	run := runKrsync(t, opts, args...)
	if run.code == 0 {
		t.Fatalf("exit 0 although two entries were unreadable:\n%s", truncateLines(run.stderr, 40))
	}
	for _, name := range []string{"secret-file", "secret-dir"} {
		if !strings.Contains(run.stderr, name) {
			t.Errorf("the output never names the unreadable %s:\n%s", name, truncateLines(run.stderr, 40))
		}
	}
	_, plain := logLines(run.stderr)
	if len(plain) != 1 || !strings.HasPrefix(plain[0], "krsync: ") {
		t.Errorf("want one final krsync: line besides the JSON log, got %q", plain)
	}
	// An unprivileged rsync cannot keep foreign owners; everything else must be there.
	ownerKinds := []treecmp.Kind{treecmp.UID, treecmp.GID}
	diffs, err := treecmp.Compare(w.src, w.dest, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rest := diffsExcept(diffs, ownerKinds, "secret"); len(rest) > 0 {
		t.Errorf("the readable part was not copied whole:\n%s", treecmp.Format(rest, 30))
	}
	if _, err := os.Lstat(filepath.Join(w.dest, "d00", "secret-file")); err == nil {
		t.Errorf("the unreadable file exists in the destination")
	}

	t.Run("rerun after fixing permissions completes", func(t *testing.T) {
		chmod(t, secretFile, 0o644)
		chmod(t, secretDir, 0o755)
		run := runKrsync(t, opts, args...)
		if run.code != 0 {
			t.Fatalf("rerun exited %d:\n%s", run.code, truncateLines(run.stderr, 40))
		}
		diffs, err := treecmp.Compare(w.src, w.dest, treecmp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rest := diffsExcept(diffs, ownerKinds); len(rest) > 0 {
			t.Errorf("after the rerun the copy differs:\n%s", treecmp.Format(rest, 30))
		}
		if left := w.leftovers(t); len(left) > 0 {
			t.Errorf("a successful run left state behind: %q", left)
		}
	})
}

// TestLocalNeverWritesThroughDestinationSymlinks: a destination that already holds symlinks
// where the source has a directory and a file must get them replaced, never followed.
func TestLocalNeverWritesThroughDestinationSymlinks(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	w := newLocalWorld(t)
	plainTree(t, w.src, 4002, 90)
	outsideDir := filepath.Join(w.world, "outside-dir")
	outsideFile := filepath.Join(w.world, "outside-file")
	mkdir(t, outsideDir)
	writeFile(t, outsideFile, "precious", 0o644)
	mkdir(t, w.dest)
	mkdir(t, filepath.Join(w.dest, "d01"))
	for link, target := range map[string]string{
		filepath.Join(w.dest, "d00"):                   outsideDir,
		filepath.Join(w.dest, "d01", "f0000002"):       outsideFile,
		filepath.Join(w.dest, "d02"):                   "../../outside-dir",
		filepath.Join(w.dest, "not-in-source-symlink"): outsideDir,
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	outside := snapshotTree(t, outsideDir)
	syncLocal(t, w, runOptions{}, "--source", w.src, "--dest", w.dest, "--workers", "3")
	requireUnchanged(t, outside, "a directory outside the destination")
	if b, err := os.ReadFile(outsideFile); err != nil || string(b) != "precious" {
		t.Errorf("a file outside the destination was written through a symlink: %q, %v", b, err)
	}
	diffs, err := treecmp.Compare(w.src, w.dest, treecmp.Options{SymlinkTimes: true})
	if err != nil {
		t.Fatal(err)
	}
	// The extra symlink stays (krsync never deletes); the root's mtime changed with it.
	if rest := diffsExcept(diffs, nil, "not-in-source-symlink"); len(rest) > 1 || (len(rest) == 1 && rest[0].Path != ".") {
		t.Errorf("destination differs from the source:\n%s", treecmp.Format(rest, 30))
	}
}

// TestLocalEqualCopiesBehindDestinationSymlinks: a re-sync leaves out what the destination
// already holds unchanged (the walk compares); a symlink in the destination to an exact copy,
// outside it, of a source directory or file must not pass for it: both are replaced by the
// real thing and the copies outside are not touched.
func TestLocalEqualCopiesBehindDestinationSymlinks(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	w := newLocalWorld(t)
	plainTree(t, w.src, 4003, 90)
	args := []string{"--source", w.src, "--dest", w.dest, "--workers", "2"}
	syncLocal(t, w, runOptions{}, args...)
	outside := filepath.Join(w.world, "outside")
	mkdir(t, outside)
	for i, rel := range []string{"d00", "d01/f0000002", "f0000000"} {
		moved := filepath.Join(outside, fmt.Sprint(i))
		if err := os.Rename(filepath.Join(w.dest, rel), moved); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(moved, filepath.Join(w.dest, rel)); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshotTree(t, outside)
	syncLocal(t, w, runOptions{}, args...)
	requireUnchanged(t, before, "the copies the destination's symlinks point to")
	diffs, err := treecmp.Compare(w.src, w.dest, treecmp.Options{SymlinkTimes: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Errorf("destination differs from the source:\n%s", treecmp.Format(diffs, 30))
	}
}

// TestLocalDestinationFull fills a small tmpfs: a clear error and a non-zero exit, then a
// rerun after making room completes.
func TestLocalDestinationFull(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs as the destination")
	}
	w := newLocalWorld(t)
	plainTree(t, w.src, 4003, 300)
	writeFile(t, filepath.Join(w.src, "d01", "big"), strings.Repeat("0123456789abcdef", 512<<10), 0o644) // 8 MiB
	mkdir(t, w.dest)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "krsync-e2e", w.dest).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", w.dest).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", w.dest, err, out)
		}
	})
	args := []string{"--source", w.src, "--dest", w.dest, "--workers", "2"}
	run := runKrsync(t, runOptions{env: w.env()}, append([]string{"--log-format=json", "local"}, args...)...)
	if run.code == 0 {
		t.Fatalf("exit 0 on a full destination:\n%s", truncateLines(run.stderr, 40))
	}
	_, plain := logLines(run.stderr)
	if last := strings.ToLower(finalLine(run.stderr)); !strings.Contains(last, "full") && !strings.Contains(last, "no space left") {
		t.Errorf("the last line does not say the destination is full: %s", last)
	}
	if len(plain) != 1 || !strings.HasPrefix(plain[0], "krsync: ") {
		t.Errorf("want one final krsync: line besides the JSON log, got %q", plain)
	}
	t.Logf("full destination: exit %d, %s", run.code, strings.Join(plain, " "))

	if out, err := exec.Command("mount", "-o", "remount,size=64m", w.dest).CombinedOutput(); err != nil {
		t.Fatalf("remount bigger: %v: %s", err, out)
	}
	syncLocal(t, w, runOptions{}, args...)
	compareTrees(t, w.src, w.dest)
	rsyncSeesNoChanges(t, w.src, w.dest)
}

// TestLocalSourceChangesDuringRun deletes files and a directory and grows a file after the
// walk listed them, just before the first rsync starts (through an rsync wrapper): vanished
// files are a warning, not a failure, and the destination ends equal to the final source.
func TestLocalSourceChangesDuringRun(t *testing.T) {
	t.Parallel()
	rsync := testbin.Rsync(t)
	w := newLocalWorld(t)
	plainTree(t, w.src, 4004, 400)
	once := filepath.Join(w.world, "changed-once")
	wrapper := filepath.Join(w.world, "rsync-changing-source")
	// The first rsync to start changes the source; the others wait until it has, so no
	// rsync copies a file before it vanishes.
	script := fmt.Sprintf(`#!/bin/sh
if mkdir '%[1]s' 2>/dev/null; then
	rm -f '%[2]s'/d01/f00000*
	rm -rf '%[2]s/d02'
	echo grown >> '%[2]s/d00/f0000005'
	touch '%[1]s/done'
fi
while [ ! -e '%[1]s/done' ]; do sleep 0.05; done
exec '%[3]s' "$@"
`, once, w.src, rsync)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	run := syncLocal(t, w, runOptions{}, "--source", w.src, "--dest", w.dest, "--workers", "2",
		"--rsync", wrapper, "--fpart-opts=-f 40 -zz")
	if _, err := os.Stat(once); err != nil {
		t.Fatalf("the wrapper never ran: %v", err)
	}
	compareTrees(t, w.src, w.dest)
	rsyncSeesNoChanges(t, w.src, w.dest)
	if n := summaryInt(t, summaryOf(t, run), "partitions_failed"); n != 0 {
		t.Errorf("%d partitions failed because files vanished", n)
	}
}

// TestLocalOddShapes copies trees whose shape, not names, is the difficulty.
func TestLocalOddShapes(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	tests := []struct {
		name  string
		build func(t *testing.T, src string)
		args  []string
	}{
		{"empty source", func(t *testing.T, src string) {
			mkdir(t, src)
		}, nil},
		{"directories only, nested and empty", func(t *testing.T, src string) {
			for i := range 30 {
				dir := filepath.Join(src, fmt.Sprintf("a%02d", i%5), fmt.Sprintf("b%02d", i), "c", "d")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			setTreeTimes(t, src)
		}, []string{"--fpart-opts=-f 7 -zz"}},
		{"hard-link group larger than a partition", func(t *testing.T, src string) {
			plainTree(t, src, 4005, 40)
			orig := filepath.Join(src, "d00", "many-links")
			writeFile(t, orig, "one inode, sixty names", 0o640)
			for i := range 60 {
				link := filepath.Join(src, fmt.Sprintf("d%02d", i%3), fmt.Sprintf("link-%02d", i))
				if err := os.Link(orig, link); err != nil {
					t.Fatal(err)
				}
			}
			setTreeTimes(t, src)
		}, []string{"--fpart-opts=-f 10 -zz", "--workers", "4"}},
		{"one huge directory", func(t *testing.T, src string) {
			if _, err := treegen.Generate(src, treegen.Spec{Seed: 4006, Files: 3000, Depth: 1, FanOut: 1, MaxSize: 100}); err != nil {
				t.Fatal(err)
			}
		}, []string{"--fpart-opts=-f 100 -zz", "--workers", "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newLocalWorld(t)
			tt.build(t, w.src)
			before := snapshotTree(t, w.src)
			syncLocal(t, w, runOptions{}, append([]string{"--source", w.src, "--dest", w.dest}, tt.args...)...)
			compareTrees(t, w.src, w.dest)
			rsyncSeesNoChanges(t, w.src, w.dest)
			requireUnchanged(t, before, "the source")
		})
	}
}

// setTreeTimes gives every directory under root (root included) an old, distinct mtime,
// deepest first, so that a copy that forgets directory times shows.
func setTreeTimes(t *testing.T, root string) {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		when := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
		if err := os.Chtimes(dirs[i], when, when); err != nil {
			t.Fatal(err)
		}
	}
}
