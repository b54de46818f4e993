package worker

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/leaseapi"
)

// TestRunGathersSparseLeases runs the worker against the real coordinator on a random tree
// with hostile names at every depth and a plain one: a first copy gives each file partition its own rsync
// run; a re-sync in which one file in 40 changed (the first and last regular files of the
// walk among them) shares runs between partitions, copies exactly those, and the
// destination equals the source after each; a copy into a fresh destination too.
func TestRunGathersSparseLeases(t *testing.T) {
	rsync := testbin.Rsync(t)
	counting := testbin.NewGatedRsync(t, rsync, 1<<30) // lets every run through, counts them
	src := t.TempDir()
	// Hostile names at every depth, the top level included, and (in plain/) a tree of plain
	// files: dropUnchanged leaves hard links and special files to rsync, so only the plain
	// tree's partitions are sparse on a re-sync.
	if _, err := treegen.Random(src, treegen.RandomSpec{Seed: 11, Entries: 300, MaxDepth: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := treegen.Generate(filepath.Join(src, "plain"), treegen.Spec{Seed: 11, Files: 1500}); err != nil {
		t.Fatal(err)
	}
	copyTo := func(dest string) (leaseapi.Status, int) {
		t.Helper()
		url, run := startCoordinator(t, src, "-f 64")
		cfg := baseConfig(t, url, src)
		cfg.Dest, cfg.RsyncBinary = dest, counting.Wrapper
		before := counting.Runs()
		if err := startWorker(t, t.Context(), cfg)(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		st, err := run()
		if err != nil {
			t.Fatalf("coordinator: %v", err)
		}
		if st.Partitions.Failed != 0 || st.Partitions.Done != st.Partitions.Total {
			t.Fatalf("partitions %+v: want all done", st.Partitions)
		}
		if err := treecmp.Equal(src, dest, treecmp.Options{}); err != nil {
			t.Fatalf("destination differs from the source: %v", err)
		}
		return st, counting.Runs() - before
	}

	dest := t.TempDir()
	st, runs := copyTo(dest)
	// Every partition but the directory pass is a file partition, and the directory pass
	// runs rsync at most twice.
	if filePartitions := int(st.Partitions.Total) - 1; runs < filePartitions || filePartitions < 10 {
		t.Fatalf("first copy: %d rsync runs for %d file partitions: want one each (and at least 10 partitions)", runs, filePartitions)
	}

	changed := changeSomeFiles(t, src)
	st, runs = copyTo(dest)
	if st.FilesTransferred != int64(len(changed)) {
		t.Errorf("re-sync transferred %d files, want the %d changed: %q", st.FilesTransferred, len(changed), changed)
	}
	if half := int(st.Partitions.Total) / 2; runs > half {
		t.Errorf("re-sync: %d rsync runs for %d partitions: want the sparse leases to share runs (at most %d)", runs, st.Partitions.Total, half)
	}
	if st.Unchanged == 0 {
		t.Errorf("re-sync: no unchanged entries counted (status %+v)", st)
	}

	copyTo(t.TempDir())
}

// changeSomeFiles rewrites the first, every 40th and the last single-link regular file of
// src in walk order (one in most partitions of the plain tree) (other bytes, same size, a new mtime) and returns their paths.
func changeSomeFiles(t *testing.T, src string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if st, err := os.Lstat(p); err == nil && linkCount(st) == 1 {
			files = append(files, p)
		}
		return nil
	})
	if err != nil || len(files) < 3 {
		t.Fatalf("walk %s: %d single-link files (%v)", src, len(files), err)
	}
	picked := []string{files[len(files)-1]}
	for i := 0; i < len(files)-1; i += 40 {
		picked = append(picked, files[i])
	}
	when := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, p := range picked {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data = append(bytes.ToUpper(data), 'x')
		if err := os.WriteFile(p, data, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
	return picked
}

// TestRunSharedRunFailureRunsEachLeaseAlone: when the rsync run shared by several leases
// fails, each lease runs again alone, so a failure is judged per partition: here rsync fails
// only when given entries of two partitions at once, and both partitions complete, none
// fails.
func TestRunSharedRunFailureRunsEachLeaseAlone(t *testing.T) {
	rsync := testbin.Rsync(t)
	src := t.TempDir()
	var first, second []string
	for i := range 10 {
		first = append(first, fmt.Sprintf("one/f%d", i))
		second = append(second, fmt.Sprintf("two/f%d", i))
	}
	for _, name := range append(append([]string(nil), first...), second...) {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("v1 "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fake, srv := newFakeCoordinator(t)
	cfg := baseConfig(t, srv.URL, src)
	// The destination holds the same tree but for one file of each partition.
	if err := os.CopyFS(cfg.Dest, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(append([]string(nil), first...), second...) {
		if err := os.Chtimes(filepath.Join(cfg.Dest, name), time.Time{}, mtime(t, filepath.Join(src, name))); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{first[3], second[7]} {
		if err := os.WriteFile(filepath.Join(src, name), []byte("v2, longer "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An rsync that refuses any run given entries of both directories (exit 23, as for a
	// file it could not read).
	wrapper := filepath.Join(t.TempDir(), "rsync-one-dir")
	script := "#!/bin/sh\ncase \"$*\" in *'/./one/'*'/./two/'*) echo 'rsync error: some files could not be transferred (code 23)' >&2; exit 23;; esac\nexec '" + rsync + "' \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	fake.queue = []leaseapi.Lease{fileLease(1, first...), fileLease(2, second...)}
	cfg.RsyncBinary = wrapper
	if err := startWorker(t, t.Context(), cfg)(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	_, _, completes, fails := fake.snapshot()
	if len(fails) != 0 || len(completes) != 2 {
		t.Fatalf("completes %v, fails %v: want both partitions complete, none failed", completes, fails)
	}
	if got := completes[1].FilesTransferred + completes[2].FilesTransferred; got != 2 {
		t.Errorf("files transferred %d, want the 2 changed", got)
	}
	// No directory pass here (the fake hands out file leases only): compare the files.
	for _, name := range append(first, second...) {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(cfg.Dest, name))
		if err != nil || !bytes.Equal(got, want) || !mtime(t, filepath.Join(cfg.Dest, name)).Equal(mtime(t, filepath.Join(src, name))) {
			t.Errorf("%s: %q (%v), want %q with the source's mtime", name, got, err, want)
		}
	}
}

func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 0
}

func mtime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}
