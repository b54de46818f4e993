package worker

import (
	"github.com/krsync/krsync/internal/testing/testbin"

	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/leaseapi"
)

// gatedRsync is an rsync wrapper that announces it started and then waits at a FIFO until the
// test opens the gate, so a test can act "in the middle of a partition" without sleeping.
type gatedRsync struct {
	binary  string
	started string
	gate    string
}

func newGatedRsync(t *testing.T, rsync string) gatedRsync {
	t.Helper()
	dir := t.TempDir()
	g := gatedRsync{
		binary:  filepath.Join(dir, "rsync-gated"),
		started: filepath.Join(dir, "started"),
		gate:    filepath.Join(dir, "gate"),
	}
	if err := syscall.Mkfifo(g.gate, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	script := fmt.Sprintf("#!/bin/sh\n: > '%s'\nread line < '%s'\nexec '%s' \"$@\"\n", g.started, g.gate, rsync)
	if err := os.WriteFile(g.binary, []byte(script), 0o755); err != nil {
		t.Fatalf("write rsync wrapper: %v", err)
	}
	return g
}

func (g gatedRsync) hasStarted() bool {
	_, err := os.Stat(g.started)
	return err == nil
}

// open lets the waiting wrapper run rsync; it blocks until the wrapper reads the gate.
func (g gatedRsync) open(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(g.gate, []byte("go\n"), 0o600); err != nil {
		t.Fatalf("open the gate: %v", err)
	}
}

// waitFor polls cond until it holds; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startWorker runs Run in a goroutine; the returned func waits for its error.
func startWorker(t *testing.T, ctx context.Context, cfg Config) func() error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t))) }()
	return func() error {
		t.Helper()
		return await(t, done, "worker.Run")
	}
}

// await receives from ch; the deadline only guards against a hang.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not return", what)
		var zero T
		return zero
	}
}

func newClient(t *testing.T, url string, giveUp time.Duration) *leaseapi.Client {
	t.Helper()
	c, err := leaseapi.NewClient(url, leaseapi.ClientOptions{
		Token: fakeToken, GiveUpAfter: giveUp, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sourceTree writes a small tree with awkward names and old mtimes; it returns its root.
func sourceTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	files := map[string]string{
		"a":                    "alpha",
		"dir with space/b c":   "bravo",
		"dir with space/-dash": "dash",
		"d/e\nnewline":         "echo",
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for name, content := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"dir with space", "d", "."} {
		if err := os.Chtimes(filepath.Join(src, d), old, old); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

func baseConfig(t *testing.T, url, src string) Config {
	t.Helper()
	return Config{
		Client: newClient(t, url, 5*time.Second),
		Name:   "test-worker",
		Source: src,
		Dest:   t.TempDir(),
		Wait:   time.Second,
	}
}

// TestRunCopiesPartitionsAndReportsStats runs the worker against the real coordinator (its
// real walk, journal and HTTP server on loopback): every partition is copied, the
// directory-metadata pass puts the directories' mtimes and modes back, and the reports
// add up in the coordinator's status.
func TestRunCopiesPartitionsAndReportsStats(t *testing.T) {
	rsync := testbin.Rsync(t)
	src := sourceTree(t)
	url, run := startCoordinator(t, src, "-f 2 -zz")
	cfg := baseConfig(t, url, src)
	cfg.RsyncBinary = rsync

	if err := startWorker(t, t.Context(), cfg)(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st, err := run()
	if err != nil {
		t.Fatalf("coordinator: %v", err)
	}
	if st.Partitions.Failed != 0 || st.Partitions.Done != st.Partitions.Total || st.Partitions.Total < 3 {
		t.Errorf("partitions %+v: want all done, files and directories", st.Partitions)
	}
	if st.FilesTransferred != 4 {
		t.Errorf("files transferred = %d, want the 4 files", st.FilesTransferred)
	}
	for _, name := range []string{"a", "dir with space/b c", "dir with space/-dash", "d/e\nnewline"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(cfg.Dest, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: got %q (%v), want %q", name, got, err, want)
		}
	}
	for _, d := range []string{".", "d", "dir with space"} {
		sfi, _ := os.Stat(filepath.Join(src, d))
		dfi, err := os.Stat(filepath.Join(cfg.Dest, d))
		if err != nil || !dfi.ModTime().Equal(sfi.ModTime()) || dfi.Mode() != sfi.Mode() {
			t.Errorf("directory %q: got %v %v (%v), want %v %v", d, dfi.ModTime(), dfi.Mode(), err, sfi.ModTime(), sfi.Mode())
		}
	}
}

// TestRunWaitsWhileTheWalkRuns: "wait" answers (the walk has not found work yet) keep the
// worker asking. The fake answers them on demand; the real coordinator only when a long
// poll times out.
func TestRunWaitsWhileTheWalkRuns(t *testing.T) {
	rsync := testbin.Rsync(t)
	fake, srv := newFakeCoordinator(t, fileLease(1, "a"))
	fake.waits = 2
	cfg := baseConfig(t, srv.URL, sourceTree(t))
	cfg.RsyncBinary = rsync
	if err := startWorker(t, t.Context(), cfg)(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if leased, _, completes, _ := fake.snapshot(); leased != 1 || len(completes) != 1 {
		t.Errorf("leased %d, completes %v: want partition 1 after the waits", leased, completes)
	}
}

// startCoordinator runs the real coordinator over src with fpart's options on loopback;
// run waits for it to end (every worker it saw told "done").
func startCoordinator(t *testing.T, src, fpartOpts string) (url string, run func() (leaseapi.Status, error)) {
	t.Helper()
	opts, err := coordinator.ParsePartitioner(fpartOpts, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return serveCoordinator(t, coordinator.Config{Source: src, Partitioner: opts, Token: fakeToken, Linger: 10 * time.Second})
}

// serveCoordinator runs the real coordinator with cfg on loopback (see startCoordinator).
func serveCoordinator(t *testing.T, cfg coordinator.Config) (url string, run func() (leaseapi.Status, error)) {
	t.Helper()
	c, err := coordinator.New(cfg, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		st  leaseapi.Status
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := c.Run(t.Context(), ln)
		done <- result{st, err}
	}()
	return "http://" + ln.Addr().String(), func() (leaseapi.Status, error) {
		t.Helper()
		r := await(t, done, "coordinator.Run")
		return r.st, r.err
	}
}

func TestRunRenewsLeaseWhileRsyncRuns(t *testing.T) {
	rsync := testbin.Rsync(t)
	src := sourceTree(t)
	gated := newGatedRsync(t, rsync)
	fake, srv := newFakeCoordinator(t, fileLease(1, "a"))
	cfg := baseConfig(t, srv.URL, src)
	cfg.RsyncBinary = gated.binary

	wait := startWorker(t, t.Context(), cfg)
	waitFor(t, "two renewals while rsync waits", func() bool {
		_, renews, _, _ := fake.snapshot()
		return renews[1] >= 2
	})
	gated.open(t)
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, _, completes, _ := fake.snapshot(); len(completes) != 1 {
		t.Errorf("completes = %v, want partition 1", completes)
	}
}

func TestRunStopsRsyncWhenLeaseIsLost(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name   string
		status int
	}{
		{"lease expired (409)", http.StatusConflict},
		{"coordinator restarted and forgot it (404)", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gated := newGatedRsync(t, rsync) // never opened: only losing the lease ends this rsync
			fake, srv := newFakeCoordinator(t, fileLease(1, "a"))
			fake.renewStatus = tt.status
			cfg := baseConfig(t, srv.URL, sourceTree(t))
			cfg.RsyncBinary = gated.binary

			if err := startWorker(t, t.Context(), cfg)(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			leased, renews, completes, fails := fake.snapshot()
			if leased != 1 || renews[1] == 0 || len(completes) != 0 || len(fails) != 0 {
				t.Errorf("leased %d, renews %v, completes %v, fails %v: want one lease, a renewal, no report", leased, renews, completes, fails)
			}
			if _, err := os.Stat(filepath.Join(cfg.Dest, "a")); err == nil {
				t.Error("the lost partition was copied anyway")
			}
		})
	}
}

func TestRunGoesOnWhenCompletionIsRefused(t *testing.T) {
	rsync := testbin.Rsync(t)
	fake, srv := newFakeCoordinator(t, fileLease(1, "a"), fileLease(2, "d"))
	fake.completeStatus = http.StatusConflict // someone else holds the partitions now
	cfg := baseConfig(t, srv.URL, sourceTree(t))
	cfg.RsyncBinary = rsync
	if err := startWorker(t, t.Context(), cfg)(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if leased, _, _, fails := fake.snapshot(); leased != 2 || len(fails) != 0 {
		t.Errorf("leased %d, fails %v: a refused completion is not a failure and the worker goes on", leased, fails)
	}
}

func TestRunHandsLeaseBackWhenStopped(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name      string
		noRelease bool
	}{
		{"by releasing the worker", false},
		{"by failing the lease when the coordinator cannot release", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gated := newGatedRsync(t, rsync)
			fake, srv := newFakeCoordinator(t, fileLease(1, "a"), fileLease(2, "d"))
			fake.noRelease = tt.noRelease
			cfg := baseConfig(t, srv.URL, sourceTree(t))
			cfg.RsyncBinary = gated.binary

			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			wait := startWorker(t, ctx, cfg)
			waitFor(t, "rsync to start", gated.hasStarted)
			stop()
			if err := wait(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			leased, _, completes, fails, releases := fake.snapshotAll()
			if leased != 1 || len(completes) != 0 {
				t.Errorf("leased %d, completes %v: a stopping worker must not take more work", leased, completes)
			}
			if tt.noRelease {
				if got := fails[1]; !got.Retryable || got.Error != StopMessage || got.Token != "lease-1" {
					t.Errorf("hand-back = %+v, want retryable %q with the lease token", got, StopMessage)
				}
			} else if releases[cfg.Name] != 1 || len(fails) != 0 {
				t.Errorf("releases %v, fails %v: want one release of %s and no failure", releases, fails, cfg.Name)
			}
		})
	}
}

func TestRunFailures(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name       string
		args       []string
		binary     string
		leases     []leaseapi.Lease
		wantFatal  bool
		wantLeased int
		wantFail   leaseapi.FailRequest
		wantDone   []int64
		// prepare readies the destination before the worker runs.
		prepare func(t *testing.T, dest string)
	}{
		{
			name:       "bad rsync option stops the worker after one partition",
			args:       []string{"--archive", "--no-such-option"},
			leases:     []leaseapi.Lease{fileLease(1, "a"), fileLease(2, "d"), fileLease(3, "dir with space")},
			wantFatal:  true,
			wantLeased: 1,
			wantFail:   leaseapi.FailRequest{Token: "lease-1", Retryable: false},
		},
		{
			name:       "rsync that cannot start stops the worker and leaves the partition retryable",
			binary:     "/nonexistent/rsync",
			leases:     []leaseapi.Lease{fileLease(1, "a"), fileLease(2, "d")},
			wantFatal:  true,
			wantLeased: 1,
			wantFail:   leaseapi.FailRequest{Token: "lease-1", Retryable: true},
		},
		{
			name:   "a partial transfer is retryable and the worker goes on",
			leases: []leaseapi.Lease{fileLease(1, "a", "dir with space"), fileLease(2, "d", "d/e\nnewline")},
			// A non-empty directory where the file "a" goes: rsync exits 23 even as root.
			prepare: func(t *testing.T, dest string) {
				if err := os.MkdirAll(filepath.Join(dest, "a", "in-the-way"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			wantLeased: 2,
			wantFail:   leaseapi.FailRequest{Token: "lease-1", Retryable: true},
			wantDone:   []int64{2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newFakeCoordinator(t, tt.leases...)
			cfg := baseConfig(t, srv.URL, sourceTree(t))
			cfg.RsyncBinary, cfg.RsyncArgs = rsync, tt.args
			if tt.binary != "" {
				cfg.RsyncBinary = tt.binary
			}
			if tt.prepare != nil {
				tt.prepare(t, cfg.Dest)
			}
			err := startWorker(t, t.Context(), cfg)()
			if got := errors.Is(err, ErrFatal); got != tt.wantFatal {
				t.Fatalf("Run = %v; fatal %v, want %v", err, got, tt.wantFatal)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			leased, _, completes, fails := fake.snapshot()
			if leased != tt.wantLeased {
				t.Errorf("leased %d partitions, want %d", leased, tt.wantLeased)
			}
			got := fails[1]
			if got.Token != tt.wantFail.Token || got.Retryable != tt.wantFail.Retryable || got.Error == "" {
				t.Errorf("failure of partition 1 = %+v, want token %q retryable %v and an error", got, tt.wantFail.Token, tt.wantFail.Retryable)
			}
			for _, id := range tt.wantDone {
				if _, ok := completes[id]; !ok {
					t.Errorf("partition %d not completed; completes %v", id, completes)
				}
			}
		})
	}
}

func TestRunGivesUpOnUnreachableCoordinator(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := Config{Client: newClient(t, url, 300*time.Millisecond), Name: "w", Source: t.TempDir(), Dest: t.TempDir()}
	err = startWorker(t, t.Context(), cfg)()
	if !errors.Is(err, leaseapi.ErrUnreachable) {
		t.Fatalf("Run = %v, want ErrUnreachable", err)
	}
}

func TestRunRefusesWrongToken(t *testing.T) {
	_, srv := newFakeCoordinator(t, fileLease(1, "a"))
	client, err := leaseapi.NewClient(srv.URL, leaseapi.ClientOptions{Token: "wrong", GiveUpAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Client: client, Name: "w", Source: t.TempDir(), Dest: t.TempDir()}
	if err := startWorker(t, t.Context(), cfg)(); !errors.Is(err, leaseapi.ErrUnauthorized) {
		t.Fatalf("Run = %v, want ErrUnauthorized", err)
	}
}
