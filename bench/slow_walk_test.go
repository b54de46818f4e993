package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/bench/slowfs"
	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/leaseapi"
)

// The slow walk benchmark answers issue 13's question about large trees on network storage:
// is the walk ever what the workers wait for? It mounts the partition benchmark's
// 1,000,000-entry tree behind slowfs (1 ms per metadata request, as BenchmarkSlowSync),
// starts `krsync coordinator` on it as a process, and leases from it over HTTP like a worker
// would: it reports the time from the coordinator's start to the first lease granted (issue
// 13's target: under 1 s), the time the whole walk took, and the walk's rate in entries per
// second next to the rate at which `krsync local --workers 8` copies files on the same slow
// storage (measured here on a 1,000-file tree): the walk must outrun the copy.
//
//	KRSYNC_BENCH_SLOW=1 go test -run '^$' -bench SlowWalk -benchtime 1x -timeout 60m ./bench/
//
// (make bench-slow runs it after BenchmarkSlowSync.) The lease is never completed: the
// coordinator is stopped once its walk is done.
func BenchmarkSlowWalk(b *testing.B) {
	if os.Getenv("KRSYNC_BENCH_SLOW") != "1" {
		b.Skip("the slow-storage benchmarks run with KRSYNC_BENCH_SLOW=1 (make bench-slow)")
	}
	tree := benchTree(b)
	krsync := krsyncBinary(b)
	cfg := slowfs.Config{Delay: time.Millisecond, EntryTTL: time.Second, AttrTTL: time.Second}
	scratch := benchScratch(b, benchDir(), "slowwalk")
	for b.Loop() {
		w := walkSlowTree(b, krsync, tree, scratch, cfg)
		perFile := copyRateSlow(b, scratch, cfg)
		copyRate := 1 / perFile.Seconds()
		walkRate := float64(w.entries) / w.walk.Seconds()
		fmt.Printf("\nslow walk of %d entries (1 ms per metadata request):\n", w.entries)
		fmt.Printf("  first lease granted %.3fs after the coordinator started (target < 1 s)\n", w.firstLease.Seconds())
		fmt.Printf("  walk done after %.1fs: %.0f entries/s, %d metadata requests\n", w.walk.Seconds(), walkRate, w.requests)
		fmt.Printf("  krsync local --workers 8 copies %.0f files/s on the same storage: the walk runs %.1fx ahead of the copy\n",
			copyRate, walkRate/copyRate)
		b.ReportMetric(w.firstLease.Seconds(), "first-lease-s")
		b.ReportMetric(w.walk.Seconds(), "walk-s")
		b.ReportMetric(walkRate/copyRate, "walk/copy-rate")
	}
}

type slowWalk struct {
	firstLease, walk time.Duration
	entries          int64
	requests         uint64
}

// walkSlowTree runs the coordinator over tree behind slowfs and times its first lease and walk.
func walkSlowTree(b *testing.B, krsync, tree, scratch string, cfg slowfs.Config) slowWalk {
	b.Helper()
	mnt, dest, state := filepath.Join(scratch, "src"), filepath.Join(scratch, "dest"), filepath.Join(scratch, "state")
	for _, d := range []string{mnt, dest} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.RemoveAll(state); err != nil {
		b.Fatal(err)
	}
	token := filepath.Join(scratch, "token")
	if err := os.WriteFile(token, []byte("slow-walk-bench\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	src, err := slowfs.Mount(tree, mnt, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer unmountSlow(b, src)
	addr := testbin.FreeLoopbackAddr(b)
	cmd := exec.Command(krsync, "--log-format=json", "--log-level=warn", "coordinator", "--source", mnt, "--dest", dest,
		"--listen", addr, "--token-file", token, "--state-dir", state, "--parallelism", "8")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	client, err := leaseapi.NewClient("http://"+addr, leaseapi.ClientOptions{Token: "slow-walk-bench", GiveUpAfter: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	var w slowWalk
	for w.firstLease == 0 {
		resp, err := client.Lease(ctx, "bench-probe", time.Second)
		if err != nil {
			b.Fatalf("lease: %v", err)
		}
		switch resp.State {
		case leaseapi.LeaseGranted:
			w.firstLease = time.Since(start)
		case leaseapi.LeaseDone:
			b.Fatal("the coordinator says done before any lease")
		}
	}
	for {
		st, err := client.Status(ctx)
		if err != nil {
			b.Fatalf("status: %v", err)
		}
		if st.WalkDone {
			w.walk, w.entries = time.Since(start), st.EntriesWalked
			break
		}
		select {
		case <-ctx.Done():
			b.Fatalf("the walk did not finish: %v", ctx.Err())
		case <-time.After(100 * time.Millisecond): // a poll of the status, as krsync status --watch does
		}
	}
	w.requests = src.Counts().Metadata()
	return w
}

// copyRateSlow times `krsync local --workers 8` copying a 1,000-file tree between two slowfs
// mounts and returns the time per file.
func copyRateSlow(b *testing.B, scratch string, cfg slowfs.Config) time.Duration {
	b.Helper()
	var shape syncShape
	for _, s := range slowShapes() {
		if s.name == "slow1k" {
			shape = s
		}
	}
	tree := syncBenchTree(b, benchDir(), shape)
	d := slowDirs{
		srcMnt: filepath.Join(scratch, "copy-src"), dstMnt: filepath.Join(scratch, "copy-dst"),
		dst: filepath.Join(scratch, "copy-dest"), work: filepath.Join(scratch, "copy-work"),
	}
	if err := os.RemoveAll(d.dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.Fatal(err)
	}
	for _, dir := range []string{d.srcMnt, d.dstMnt} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	var tool slowTool
	for _, t := range slowTools(b, []int{8}) {
		if t.name == "krsync-w8" {
			tool = t
		}
	}
	run := runSlowTool(b, tool, tree, d, cfg)
	checkSlowCopy(b, tool, tree, d.dst)
	files := shape.spec.Files
	if files <= 0 {
		b.Fatalf("shape %s: no file count", shape.name)
	}
	return run.took / time.Duration(files)
}
