package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/leaseapi"
)

const testTempDir = ".krsync-tmp-worker-test"

// withTempDir sets the run's temporary directory on a lease, as the coordinator does.
func withTempDir(l leaseapi.Lease) leaseapi.Lease {
	l.TempDir = testTempDir
	return l
}

// plantUserFiles puts in the destination what belongs to the user and must survive any
// partition: files named like rsync's temporary files beside listed names (the worker used
// to delete those), and a symlinked directory leading out of the destination with such a
// file behind it. It returns a check to run at the end.
func plantUserFiles(t *testing.T, dest string) func() {
	t.Helper()
	outside := t.TempDir()
	files := map[string]string{
		filepath.Join(dest, ".a.abc123"):                     "user data beside a",
		filepath.Join(dest, "dir with space", ".b c.x1Y2z3"): "user data beside b c",
		filepath.Join(outside, ".a.abc123"):                  "outside",
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dest, "linked")); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		for p, want := range files {
			if got, err := os.ReadFile(p); err != nil || string(got) != want {
				t.Errorf("%s = %q, %v: krsync removed or changed a file it did not create", p, got, err)
			}
		}
		if target, err := os.Readlink(filepath.Join(dest, "linked")); err != nil || target != outside {
			t.Errorf("the destination's symlink changed: %q, %v", target, err)
		}
	}
}

// TestRunRemovesOnlyItsOwnTempDir runs successful, failed and stopped partitions over a
// destination holding the user's look-alikes of rsync's temporary files: they stay, and
// what krsync made (its temporary directory) is gone once the last lease removed it.
func TestRunRemovesOnlyItsOwnTempDir(t *testing.T) {
	rsync := testbin.Rsync(t)
	dirs := withTempDir(fileLease(9, ".", "d", "dir with space"))
	dirs.Kind, dirs.RemoveTempDir = leaseapi.KindDirs, true
	tests := []struct {
		name    string
		leases  []leaseapi.Lease
		prepare func(t *testing.T, dest string)
		stop    bool // cancel the worker while rsync runs
	}{
		{name: "successful partitions", leases: []leaseapi.Lease{
			withTempDir(fileLease(1, "a", "dir with space", "dir with space/b c")),
			withTempDir(fileLease(2, "d", "d/e\nnewline")),
			dirs,
		}},
		{name: "a failed partition", leases: []leaseapi.Lease{
			withTempDir(fileLease(1, "a", "d", "d/e\nnewline")), dirs,
		}, prepare: func(t *testing.T, dest string) {
			// A non-empty directory where a file goes: rsync exits 23.
			if err := os.MkdirAll(filepath.Join(dest, "d", "e\nnewline", "in-the-way"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "leftovers of a killed worker", leases: []leaseapi.Lease{withTempDir(fileLease(1, "a")), dirs},
			prepare: func(t *testing.T, dest string) {
				p := filepath.Join(dest, testTempDir+".p4-a1-dead", "a.AbC123")
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "a stopped partition", leases: []leaseapi.Lease{withTempDir(fileLease(1, "a"))}, stop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newFakeCoordinator(t, tt.leases...)
			cfg := baseConfig(t, srv.URL, sourceTree(t))
			cfg.RsyncBinary = rsync
			check := plantUserFiles(t, cfg.Dest)
			if tt.prepare != nil {
				tt.prepare(t, cfg.Dest)
			}
			if tt.stop {
				gated := newGatedRsync(t, rsync)
				cfg.RsyncBinary = gated.binary
				ctx, stop := context.WithCancel(t.Context())
				defer stop()
				wait := startWorker(t, ctx, cfg)
				waitFor(t, "rsync to start", gated.hasStarted)
				// The attempt's directory exists while rsync runs...
				if dirs, _ := filepath.Glob(filepath.Join(cfg.Dest, testTempDir+".p1-a1-*")); len(dirs) != 1 {
					t.Errorf("temporary directories while rsync runs: %q; want one %s.p1-a1-*", dirs, testTempDir)
				}
				stop()
				if err := wait(); !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v, want context.Canceled", err)
				}
				// ...and is gone with the attempt.
				if left, _ := filepath.Glob(filepath.Join(cfg.Dest, testTempDir+"*")); len(left) != 0 {
					t.Errorf("after the stop: %q; want no temporary directory", left)
				}
				check()
				return
			}
			if err := startWorker(t, t.Context(), cfg)(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			check()
			if left, _ := filepath.Glob(filepath.Join(cfg.Dest, testTempDir+"*")); len(left) != 0 {
				t.Errorf("krsync's temporary directories are still there: %q", left)
			}
			_, _, completes, _ := fake.snapshot()
			if _, ok := completes[9]; !ok {
				t.Errorf("the directory pass did not complete: %v", completes)
			}
		})
	}
}

// TestRunRefusesPlantedTempDir: a symlink with the name of the run's temporary directories
// is never followed: a file partition copies beside it (each attempt makes a directory of
// its own), and the final removal refuses it and stops the worker.
func TestRunRefusesPlantedTempDir(t *testing.T) {
	rsync := testbin.Rsync(t)
	dirs := withTempDir(fileLease(9, "."))
	dirs.Kind, dirs.RemoveTempDir = leaseapi.KindDirs, true
	for name, l := range map[string]leaseapi.Lease{"file partition": withTempDir(fileLease(1, "a")), "final removal": dirs} {
		t.Run(name, func(t *testing.T) {
			fake, srv := newFakeCoordinator(t, l)
			cfg := baseConfig(t, srv.URL, sourceTree(t))
			cfg.RsyncBinary = rsync
			outside := t.TempDir()
			if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("outside"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(cfg.Dest, testTempDir)); err != nil {
				t.Fatal(err)
			}
			err := startWorker(t, t.Context(), cfg)()
			_, _, completes, _ := fake.snapshot()
			if name == "file partition" {
				if _, ok := completes[1]; err != nil || !ok {
					t.Errorf("Run = %v, completes %v; want the partition copied beside the planted symlink", err, completes)
				}
			} else {
				if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "symlink") || strings.Contains(err.Error(), "\n") {
					t.Errorf("Run = %v; want a one-line fatal error about the symlink", err)
				}
				if len(completes) != 0 {
					t.Errorf("completed %v", completes)
				}
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 1 {
				t.Errorf("the symlink was followed: %v", entries)
			}
			if fi, err := os.Lstat(filepath.Join(cfg.Dest, testTempDir)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the planted symlink changed: %v, %v", fi, err)
			}
		})
	}
}

// TestRunChecksSourceFirst: a worker whose source lacks every name the coordinator saw at
// the top of its source stops before copying, hands the lease back unspent, and says so.
func TestRunChecksSourceFirst(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name     string
		check    []string
		mismatch bool
	}{
		{"one name present is enough", []string{"gone-since", "a"}, false},
		{"no names: no check", nil, false},
		{"only names that are not plain are ignored", []string{"../etc", "x/y"}, false},
		{"none present", []string{"a-not-here", "#neither", "new\nline"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := fileLease(1, "a", "d")
			l.SourceCheck = tt.check
			fake, srv := newFakeCoordinator(t, l, fileLease(2, "dir with space"))
			cfg := baseConfig(t, srv.URL, sourceTree(t))
			cfg.RsyncBinary = rsync
			err := startWorker(t, t.Context(), cfg)()
			leased, _, completes, fails, releases := fake.snapshotAll()
			if !tt.mismatch {
				if err != nil || len(completes) != 2 {
					t.Fatalf("Run = %v, completes %v; want both partitions done", err, completes)
				}
				return
			}
			var mismatch *SourceMismatchError
			if !errors.As(err, &mismatch) || !errors.Is(err, ErrFatal) || !errors.Is(err, ErrSourceMismatch) {
				t.Fatalf("Run = %v; want a fatal *SourceMismatchError", err)
			}
			want := `the worker's source does not match the coordinator's: none of "a-not-here", "#neither", "new\nline" is in ` + cfg.Source +
				` (is --source/the volume mount or subPath the same as the coordinator's?)`
			if err.Error() != want {
				t.Errorf("error\n%s\nwant\n%s", err, want)
			}
			if leased != 1 || releases[cfg.Name] != 1 || len(fails) != 0 || len(completes) != 0 {
				t.Errorf("leased %d, releases %v, fails %v, completes %v; want the one lease handed back unspent", leased, releases, fails, completes)
			}
			if entries, _ := os.ReadDir(cfg.Dest); len(entries) != 0 {
				t.Errorf("copied before the check: %v", entries)
			}
		})
	}
}

// TestRunFailsMostlyVanishedPartitions: a few entries gone since the walk is a live tree; most
// of a partition gone is a worker looking at another tree, and must not count as done.
func TestRunFailsMostlyVanishedPartitions(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name     string
		paths    []string
		failed   bool
		vanished []string
	}{
		{"one of four vanished", []string{"a", "d", "d/e\nnewline", "gone"}, false, nil},
		{"half vanished", []string{"a", "gone"}, false, nil},
		{"a lone entry vanished", []string{"gone"}, false, nil},
		{"two of three vanished", []string{"a", "gone", "#gone too"}, true, []string{"gone", "#gone too"}},
		{"all vanished", []string{"x/1", "x/2", "x/3"}, true, []string{"x/1", "x/2", "x/3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newFakeCoordinator(t, fileLease(1, tt.paths...), fileLease(2, "dir with space"))
			cfg := baseConfig(t, srv.URL, sourceTree(t))
			cfg.RsyncBinary = rsync
			if err := startWorker(t, t.Context(), cfg)(); err != nil {
				t.Fatalf("Run = %v; the worker goes on after such a partition", err)
			}
			_, _, completes, fails := fake.snapshot()
			if _, ok := completes[2]; !ok {
				t.Errorf("the next partition was not done: %v", completes)
			}
			got, failed := fails[1]
			if failed != tt.failed {
				t.Fatalf("partition 1 failed %v (%+v), completes %v; want failed %v", failed, got, completes, tt.failed)
			}
			if !failed {
				return
			}
			if got.Retryable || !reflect.DeepEqual(got.FailedPaths, tt.vanished) ||
				!strings.Contains(got.Error, "may not be the tree the coordinator walked") {
				t.Errorf("failure %+v; want not retryable, failed paths %q, a message about the source", got, tt.vanished)
			}
		})
	}
}

// TestRunMostlyVanishedLooksAtTheSourceAgain: with SourceCheck names in the lease, a partition
// whose entries mostly vanished is a live change when the source still holds at least half
// of those names (done, with a warning), and a worker looking at another tree otherwise
// (the worker stops with ErrSourceMismatch and hands the partition back unspent), unless the
// worker found most of them in the same directory before: then they were renamed away
// during the run, a live change (the rsync wrapper renames them just before rsync runs).
func TestRunMostlyVanishedLooksAtTheSourceAgain(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name     string
		check    []string
		renamed  bool
		mismatch bool
	}{
		{"the source still holds the walked names", []string{"a", "d", "dir with space", "deleted-since"}, false, false},
		{"most walked names are missing", []string{"a", "not-here", "nor-here", "gone-too"}, false, true},
		{"most missing from the start, then renamed away", []string{"a", "not-here", "nor-here", "gone-too"}, true, true},
		{"the walked names renamed away during the run", []string{"a", "d"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lease := fileLease(1, "x/1", "x/2", "x/3")
			lease.SourceCheck = tt.check
			fake, srv := newFakeCoordinator(t, lease)
			src := sourceTree(t)
			cfg := baseConfig(t, srv.URL, src)
			cfg.RsyncBinary = rsync
			if tt.renamed {
				cfg.RsyncBinary = filepath.Join(t.TempDir(), "rsync-renaming")
				script := fmt.Sprintf("#!/bin/sh\nmv '%[1]s/a' '%[1]s/a.old' 2>/dev/null; mv '%[1]s/d' '%[1]s/d.old' 2>/dev/null\nexec '%[2]s' \"$@\"\n", src, rsync)
				if err := os.WriteFile(cfg.RsyncBinary, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := startWorker(t, t.Context(), cfg)()
			_, _, completes, fails, releases := fake.snapshotAll()
			if !tt.mismatch {
				if _, ok := completes[1]; err != nil || !ok || len(fails) > 0 {
					t.Fatalf("Run = %v, completes %v, fails %v: want the partition done", err, completes, fails)
				}
				return
			}
			if !errors.Is(err, ErrSourceMismatch) || !errors.Is(err, ErrFatal) {
				t.Fatalf("Run = %v; want ErrSourceMismatch", err)
			}
			if len(completes) > 0 || len(fails) > 0 || releases[cfg.Name] == 0 {
				t.Errorf("completes %v, fails %v, releases %v: want the partition handed back unspent", completes, fails, releases)
			}
		})
	}
}

// TestRunReportsSymlinkedParents: entries below a symlink leading out of the source are not
// copied; the partition fails for good naming them, the rest is copied, the worker goes on.
func TestRunReportsSymlinkedParents(t *testing.T) {
	rsync := testbin.Rsync(t)
	src := sourceTree(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(src, "lnk")); err != nil {
		t.Fatal(err)
	}
	fake, srv := newFakeCoordinator(t, fileLease(1, "lnk/secret", "a"), fileLease(2, "d"))
	cfg := baseConfig(t, srv.URL, src)
	cfg.RsyncBinary = rsync
	if err := startWorker(t, t.Context(), cfg)(); err != nil {
		t.Fatalf("Run = %v; the worker goes on", err)
	}
	_, _, completes, fails := fake.snapshot()
	got := fails[1]
	if got.Retryable || !reflect.DeepEqual(got.FailedPaths, []string{"lnk/secret"}) || !strings.Contains(got.Error, "symlink") {
		t.Errorf("failure %+v; want not retryable, naming lnk/secret", got)
	}
	if _, ok := completes[2]; !ok {
		t.Errorf("the next partition was not done: %v", completes)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dest, "a")); err != nil {
		t.Errorf("the partition's other entry was not copied: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(cfg.Dest, "lnk", "secret")); err == nil {
		t.Errorf("read through the symlink out of the source")
	}
}

// TestRunStopsWhenARootIsReplaced: the destination path swapped for a symlink to another
// directory after the first lease's rsync (by an rsync wrapper) stops the worker: that lease
// is handed back, not reported done, and the next lease writes nothing into the other
// directory.
func TestRunStopsWhenARootIsReplaced(t *testing.T) {
	rsync := testbin.Rsync(t)
	src := sourceTree(t)
	base := t.TempDir()
	dest, outside := filepath.Join(base, "dest"), filepath.Join(base, "outside")
	for _, d := range []string{dest, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wrapper := filepath.Join(t.TempDir(), "rsync-then-swap")
	script := fmt.Sprintf("#!/bin/sh\n'%[1]s' \"$@\"; rc=$?\nif [ ! -L '%[2]s' ]; then mv '%[2]s' '%[2]s.real' && ln -s '%[3]s' '%[2]s'; fi\nexit $rc\n", rsync, dest, outside)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	fake, srv := newFakeCoordinator(t, fileLease(1, "a"), fileLease(2, "d"))
	cfg := baseConfig(t, srv.URL, src)
	cfg.Dest, cfg.RsyncBinary = dest, wrapper
	err := startWorker(t, t.Context(), cfg)()
	if !errors.Is(err, ErrFatal) || !strings.Contains(err.Error(), "no longer the directory it was") {
		t.Fatalf("Run = %v; want the worker stopped: the destination is no longer its directory", err)
	}
	_, _, completes, fails, releases := fake.snapshotAll()
	if len(completes) > 0 || len(fails) > 0 || releases[cfg.Name] == 0 {
		t.Errorf("completes %v, fails %v, releases %v: want the lease handed back, nothing reported done", completes, fails, releases)
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) > 0 {
		t.Errorf("the directory behind the swapped path holds %v (%v): want nothing written there", entries, err)
	}
}
