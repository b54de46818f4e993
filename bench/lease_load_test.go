package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/leaseapi"
)

// The lease load test: many simulated workers hammer one coordinator over loopback with
// tiny partitions, abandoning some leases (they expire and are re-issued), completing some
// twice, and completing some with a wrong token. Every partition must end done exactly once,
// and no goroutine may be left behind. It prints lease operations per second and the p99
// latency of granted leases and completions; it does not assert them (timings depend on
// whatever else the machine runs).
//
//	go test -run TestLeaseLoad -v ./bench/
//
// Full size is 256 workers and 100,000 partitions (also `make bench`, through
// BenchmarkLeaseLoad); under -race or -short it is scaled down to keep the test suite
// quick. KRSYNC_LOAD_PARTITIONS and KRSYNC_LOAD_WORKERS override.
func TestLeaseLoad(t *testing.T) {
	partitions, workers := 100_000, 256
	if raceEnabled() || testing.Short() {
		partitions, workers = 2_000, 64
	}
	runLeaseLoad(t, envInt(t, "KRSYNC_LOAD_PARTITIONS", partitions), envInt(t, "KRSYNC_LOAD_WORKERS", workers))
}

// BenchmarkLeaseLoad runs the full-size load test once, whatever b.N.
func BenchmarkLeaseLoad(b *testing.B) {
	for range b.N {
		runLeaseLoad(b, envInt(b, "KRSYNC_LOAD_PARTITIONS", 100_000), envInt(b, "KRSYNC_LOAD_WORKERS", 256))
	}
}

// loadStats are the workers' counters.
type loadStats struct {
	granted, waits, renews, completes, duplicates, wrongTokens, abandoned, lateStale atomic.Int64
	mu                                                                               sync.Mutex
	latencies                                                                        []time.Duration
}

func (s *loadStats) observe(d time.Duration) {
	s.mu.Lock()
	s.latencies = append(s.latencies, d)
	s.mu.Unlock()
}

func runLeaseLoad(t testing.TB, partitions, workers int) {
	goroutinesBefore := runtime.NumGoroutine()
	var memBefore runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&memBefore)

	const token = "load-test-token"
	walk := func(ctx context.Context, h coordinator.WalkHandler) error {
		for i := range partitions {
			p := fmt.Sprintf("f%07d", i)
			if err := h.Partition(coordinator.WalkPartition{List: append([]byte(p), 0), Entries: 1, Bytes: 1}); err != nil {
				return err
			}
		}
		return h.Dir(".")
	}
	c, err := coordinator.New(coordinator.Config{
		Source: t.TempDir(), Walk: walk, Token: token,
		LeaseTTL: 500 * time.Millisecond, MaxAttempts: 1000, MaxWait: 2 * time.Second,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	type result struct {
		status leaseapi.Status
		err    error
	}
	runDone := make(chan result, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		st, err := c.Run(ctx, ln)
		runDone <- result{st, err}
	}()

	// completedBy[id] counts the distinct leases whose completion was accepted.
	completedBy := make([]atomic.Int32, partitions+2)
	var stats loadStats
	cpuBefore := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			if err := simulateWorker(ctx, url, token, "load-"+strconv.Itoa(w), uint64(w), completedBy, &stats); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpuBefore
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var res result
	select {
	case res = <-runDone:
	case <-time.After(2 * time.Minute):
		t.Fatalf("coordinator did not return; status %+v", c.Status())
	}
	if res.err != nil {
		t.Fatalf("coordinator: %v", res.err)
	}

	for id := 1; id < len(completedBy); id++ {
		if n := completedBy[id].Load(); n != 1 {
			t.Errorf("partition %d completed by %d leases; want exactly 1", id, n)
		}
	}
	st := res.status
	if st.Partitions.Done != int64(partitions+1) || st.Partitions.Total != int64(partitions+1) ||
		st.FilesTransferred != int64(partitions) || st.EntriesDone != int64(partitions) {
		t.Errorf("final status %+v; want %d files partitions and 1 dirs partition done, each counted once", st, partitions)
	}

	ops := stats.granted.Load() + stats.renews.Load() + stats.completes.Load() + stats.duplicates.Load() + stats.wrongTokens.Load() + stats.lateStale.Load()
	slices.Sort(stats.latencies)
	p := func(q float64) time.Duration {
		if len(stats.latencies) == 0 {
			return 0
		}
		return stats.latencies[min(len(stats.latencies)-1, int(q*float64(len(stats.latencies))))]
	}
	t.Logf("lease load: %d workers, %d partitions in %s (race detector: %v)", workers, partitions, elapsed.Round(time.Millisecond), raceEnabled())
	t.Logf("  %.0f lease operations/s (%d ops: %d leases granted, %d completions, %d renewals, %d duplicate and %d wrong-token completions, %d late stale ones; %d waits)",
		float64(ops)/elapsed.Seconds(), ops, stats.granted.Load(), stats.completes.Load(), stats.renews.Load(),
		stats.duplicates.Load(), stats.wrongTokens.Load(), stats.lateStale.Load(), stats.waits.Load())
	t.Logf("  %.0f lease operations per CPU-second of this process (coordinator and all simulated workers; %.1f of %d cores busy on average)",
		float64(ops)/cpu.Seconds(), cpu.Seconds()/elapsed.Seconds(), runtime.NumCPU())
	t.Logf("  %d leases abandoned to expire; latency of granted leases and completions: p50 %s, p99 %s, max %s (target p99 < 20ms, >= 5000 ops/s)",
		stats.abandoned.Load(), p(0.50), p(0.99), p(1))

	// No goroutine is left behind once the coordinator returned and connections closed.
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > goroutinesBefore+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutine leak: %d before, %d after\n%s", goroutinesBefore, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	var memAfter runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&memAfter)
	t.Logf("  heap in use: %d KiB before, %d KiB after the run", memBefore.HeapInuse>>10, memAfter.HeapInuse>>10)
}

// simulateWorker leases until done. Per lease it may abandon it (1%), renew it first (2%),
// complete it twice with the same token (5%), or try a wrong token before the right one (2%).
func simulateWorker(ctx context.Context, url, token, name string, seed uint64, completedBy []atomic.Int32, s *loadStats) error {
	cl, err := leaseapi.NewClient(url, leaseapi.ClientOptions{Token: token, GiveUpAfter: 30 * time.Second, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 42))
	var abandoned []leaseapi.Lease
	for {
		t0 := time.Now()
		resp, err := cl.Lease(ctx, name, time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		switch resp.State {
		case leaseapi.LeaseDone:
			return nil
		case leaseapi.LeaseWait:
			s.waits.Add(1)
			continue
		}
		s.observe(time.Since(t0))
		s.granted.Add(1)
		l := *resp.Lease
		roll := rng.Float64()
		if roll < 0.01 {
			s.abandoned.Add(1)
			abandoned = append(abandoned, l)
			continue
		}
		if roll < 0.03 {
			if _, err := cl.Renew(ctx, l.Partition, l.Token); err != nil && !errors.Is(err, leaseapi.ErrStaleLease) {
				return fmt.Errorf("%s: %w", name, err)
			}
			s.renews.Add(1)
		}
		if roll >= 0.08 && roll < 0.10 {
			err := cl.Complete(ctx, l.Partition, "not-"+l.Token, leaseapi.TransferStats{FilesTransferred: 1})
			if !errors.Is(err, leaseapi.ErrStaleLease) {
				return fmt.Errorf("%s: completion with a wrong token: %v, want a stale lease", name, err)
			}
			s.wrongTokens.Add(1)
		}
		var files int64
		if l.Kind == leaseapi.KindFiles {
			files = 1
		}
		t0 = time.Now()
		err = cl.Complete(ctx, l.Partition, l.Token, leaseapi.TransferStats{FilesTransferred: files})
		s.observe(time.Since(t0))
		s.completes.Add(1)
		switch {
		case errors.Is(err, leaseapi.ErrStaleLease):
			continue // this worker was slower than the TTL: the lease went to someone else
		case err != nil:
			return fmt.Errorf("%s: %w", name, err)
		}
		completedBy[l.Partition].Add(1)
		if roll >= 0.03 && roll < 0.08 {
			if err := cl.Complete(ctx, l.Partition, l.Token, leaseapi.TransferStats{FilesTransferred: files}); err != nil {
				return fmt.Errorf("%s: repeated completion with the same token: %w", name, err)
			}
			s.duplicates.Add(1)
		}
		// A worker that abandoned a lease comes back later and reports it: if it expired in
		// the meantime the answer is stale; if it is still valid the completion counts.
		if len(abandoned) > 0 && rng.Float64() < 0.5 {
			old := abandoned[0]
			abandoned = abandoned[1:]
			var oldFiles int64
			if old.Kind == leaseapi.KindFiles {
				oldFiles = 1
			}
			err := cl.Complete(ctx, old.Partition, old.Token, leaseapi.TransferStats{FilesTransferred: oldFiles})
			switch {
			case err == nil:
				completedBy[old.Partition].Add(1)
			case errors.Is(err, leaseapi.ErrStaleLease):
				s.lateStale.Add(1)
			default:
				return fmt.Errorf("%s: late completion: %w", name, err)
			}
		}
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
