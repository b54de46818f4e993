package coordinator

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/leaseapi"
)

const testToken = "test-token-0123456789"

// feed is a WalkFunc the test drives: partitions appear when the test sends them, and
// the walk ends (reporting dirs) when the test closes parts.
type feed struct {
	parts chan WalkPartition
	dirs  []string
}

func newFeed(dirs ...string) *feed {
	return &feed{parts: make(chan WalkPartition, 1024), dirs: dirs}
}

func (f *feed) walk(ctx context.Context, h WalkHandler) error {
	for {
		select {
		case p, ok := <-f.parts:
			if !ok {
				for _, d := range f.dirs {
					if err := h.Dir(d); err != nil {
						return err
					}
				}
				return nil
			}
			if err := h.Partition(p); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *feed) send(paths ...string) {
	f.parts <- part(paths...)
}

func part(paths ...string) WalkPartition {
	return WalkPartition{List: leaseapi.JoinList(paths), Entries: int64(len(paths)), Bytes: int64(10 * len(paths))}
}

// staticWalk is a deterministic walk of fixed partitions and directories.
func staticWalk(parts [][]string, dirs []string) WalkFunc {
	return func(ctx context.Context, h WalkHandler) error {
		for _, p := range parts {
			if err := h.Partition(part(p...)); err != nil {
				return err
			}
		}
		for _, d := range dirs {
			if err := h.Dir(d); err != nil {
				return err
			}
		}
		return nil
	}
}

// running is a coordinator running in the background on a loopback port.
type running struct {
	c      *Coordinator
	url    string
	client *leaseapi.Client
	cancel context.CancelFunc
	done   chan struct{}
	status leaseapi.Status
	err    error
}

// start runs a coordinator for cfg (Source, Token and Walk filled in when empty).
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	if cfg.Source == "" {
		cfg.Source = t.TempDir()
	}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	c, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan struct{})}
	r.client = newClient(t, r.url, cfg.Token)
	go func() {
		defer close(r.done)
		r.status, r.err = c.Run(ctx, ln)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the run and waits for Run to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context ending")
	}
}

// wait waits for Run to return by itself.
func (r *running) wait(t *testing.T) (leaseapi.Status, error) {
	t.Helper()
	select {
	case <-r.done:
		return r.status, r.err
	case <-time.After(time.Minute):
		t.Fatalf("Run did not return; status %+v", r.c.Status())
	}
	return leaseapi.Status{}, nil
}

func newClient(t *testing.T, url, token string) *leaseapi.Client {
	t.Helper()
	cl, err := leaseapi.NewClient(url, leaseapi.ClientOptions{Token: token, GiveUpAfter: 10 * time.Second, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func testLogger(t *testing.T) zerolog.Logger { return testLoggerTB(t) }

func testLoggerTB(t testing.TB) zerolog.Logger {
	if os.Getenv("KRSYNC_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustLease leases one partition, waiting for it.
func mustLease(t *testing.T, cl *leaseapi.Client, worker string) leaseapi.Lease {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := cl.Lease(context.Background(), worker, time.Second)
		if err != nil {
			t.Fatalf("lease: %v", err)
		}
		switch resp.State {
		case leaseapi.LeaseGranted:
			return *resp.Lease
		case leaseapi.LeaseDone:
			t.Fatalf("lease: done, want a partition")
		}
	}
	t.Fatal("lease: no partition within 30s")
	return leaseapi.Lease{}
}

// drain leases and completes partitions until the coordinator answers done; it returns
// the leases it completed.
func drain(t *testing.T, cl *leaseapi.Client, worker string) []leaseapi.Lease {
	t.Helper()
	var got []leaseapi.Lease
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := cl.Lease(context.Background(), worker, time.Second)
		if err != nil {
			t.Fatalf("lease: %v", err)
		}
		switch resp.State {
		case leaseapi.LeaseDone:
			return got
		case leaseapi.LeaseGranted:
			l := *resp.Lease
			var stats leaseapi.TransferStats
			if l.Kind == leaseapi.KindFiles {
				stats.FilesTransferred = l.Entries
			}
			if err := cl.Complete(context.Background(), l.Partition, l.Token, stats); err != nil {
				t.Fatalf("complete %d: %v", l.Partition, err)
			}
			got = append(got, l)
		}
	}
	t.Fatal("drain: not done within 30s")
	return nil
}

// do sends one raw request and returns the status code and body.
func do(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
