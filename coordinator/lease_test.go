package coordinator

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/krsync/krsync/leaseapi"
)

func TestRunCompletesFilesThenDirs(t *testing.T) {
	f := newFeed(".", "a", "a/b")
	r := start(t, Config{Walk: f.walk, Linger: time.Minute})
	f.send("a/1", "a/2")
	f.send("a/b/3")

	l1 := mustLease(t, r.client, "w1")
	if l1.Kind != leaseapi.KindFiles || l1.Attempt != 1 || l1.Token == "" || l1.TTLMS <= 0 {
		t.Fatalf("first lease = %+v", l1)
	}
	if got := l1.Paths(); !slices.Equal(got, []string{"a/1", "a/2"}) {
		t.Fatalf("first lease paths = %q", got)
	}
	if err := r.client.Complete(context.Background(), l1.Partition, l1.Token, leaseapi.TransferStats{FilesTransferred: 2, BytesTransferred: 20}); err != nil {
		t.Fatal(err)
	}
	l2 := mustLease(t, r.client, "w1")
	close(f.parts) // the walk ends while l2 is out: no directory pass before it is done

	// While a file partition is leased, a lease asks the worker to wait, not to quit.
	resp, err := r.client.Lease(context.Background(), "w2", 0)
	if err != nil || resp.State != leaseapi.LeaseWait {
		t.Fatalf("lease while a file partition is out = %+v, %v; want wait", resp, err)
	}
	if err := r.client.Complete(context.Background(), l2.Partition, l2.Token, leaseapi.TransferStats{FilesTransferred: 1, BytesTransferred: 10}); err != nil {
		t.Fatal(err)
	}

	dirs := mustLease(t, r.client, "w2")
	if dirs.Kind != leaseapi.KindDirs || !slices.Equal(dirs.Paths(), []string{".", "a", "a/b"}) {
		t.Fatalf("directory lease = %+v paths %q", dirs, dirs.Paths())
	}
	if err := r.client.Complete(context.Background(), dirs.Partition, dirs.Token, leaseapi.TransferStats{}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"w1", "w2"} {
		resp, err := r.client.Lease(context.Background(), w, time.Second)
		if err != nil || resp.State != leaseapi.LeaseDone {
			t.Fatalf("lease after the end = %+v, %v; want done", resp, err)
		}
	}
	st, err := r.wait(t) // every worker seen was told: Run returns before the linger
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := leaseapi.PartitionCounts{Done: 3, Total: 3}
	if st.Partitions != want || !st.WalkDone || !st.Finished || st.EntriesWalked != 3 || st.EntriesDone != 3 ||
		st.BytesWalked != 30 || st.FilesTransferred != 3 || st.BytesTransferred != 30 {
		t.Fatalf("final status = %+v", st)
	}
}

func TestLeaseExpiresAndIsReissued(t *testing.T) {
	r := start(t, Config{Walk: staticWalk([][]string{{"x"}}, []string{"."}), LeaseTTL: 100 * time.Millisecond})
	first := mustLease(t, r.client, "dies")
	// Nobody renews: the lease expires at its deadline and the partition is handed out again.
	second := mustLease(t, r.client, "lives")
	if second.Partition != first.Partition || second.Attempt != 2 || second.Token == first.Token {
		t.Fatalf("re-issued lease = %+v, first %+v", second, first)
	}
	ctx := context.Background()
	if _, err := r.client.Renew(ctx, first.Partition, first.Token); !errors.Is(err, leaseapi.ErrStaleLease) {
		t.Fatalf("renew with the expired token: %v, want ErrStaleLease", err)
	}
	if err := r.client.Complete(ctx, first.Partition, first.Token, leaseapi.TransferStats{FilesTransferred: 1}); !errors.Is(err, leaseapi.ErrStaleLease) {
		t.Fatalf("complete with the expired token: %v, want ErrStaleLease", err)
	}
	// The second worker may itself be slower than the tiny TTL on a busy machine, so its
	// lease may be stale too; what matters is that exactly one completion counts.
	if ttl, err := r.client.Renew(ctx, second.Partition, second.Token); (err != nil || ttl != 100*time.Millisecond) && !errors.Is(err, leaseapi.ErrStaleLease) {
		t.Fatalf("renew = %v, %v", ttl, err)
	}
	err := r.client.Complete(ctx, second.Partition, second.Token, leaseapi.TransferStats{FilesTransferred: 1})
	if err != nil && !errors.Is(err, leaseapi.ErrStaleLease) {
		t.Fatal(err)
	}
	drain(t, r.client, "lives")
	r.c.ReleaseWorker("dies") // a gone worker is not waited for
	st, err := r.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	if st.FilesTransferred != 1 || st.Partitions.Done != 2 {
		t.Fatalf("status = %+v; want the partition counted once", st)
	}
}

func TestCompletionAnswers(t *testing.T) {
	r := start(t, Config{Walk: staticWalk([][]string{{"a"}, {"b"}}, []string{"."})})
	ctx := context.Background()
	la := mustLease(t, r.client, "w")
	lb := mustLease(t, r.client, "w")
	stats := leaseapi.TransferStats{FilesTransferred: 1, BytesTransferred: 5}
	if err := r.client.Complete(ctx, la.Partition, la.Token, stats); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"same token again is accepted, not counted", func() error { return r.client.Complete(ctx, la.Partition, la.Token, stats) }, nil},
		{"another token on a done partition", func() error { return r.client.Complete(ctx, la.Partition, lb.Token, stats) }, leaseapi.ErrStaleLease},
		{"wrong token on a leased partition", func() error { return r.client.Complete(ctx, lb.Partition, la.Token, stats) }, leaseapi.ErrStaleLease},
		{"empty token", func() error { return r.client.Complete(ctx, lb.Partition, "", stats) }, leaseapi.ErrStaleLease},
		{"fail after done", func() error {
			return r.client.Fail(ctx, la.Partition, leaseapi.FailRequest{Token: la.Token, Error: "x", Retryable: true})
		}, leaseapi.ErrStaleLease},
		{"renew after done", func() error { _, err := r.client.Renew(ctx, la.Partition, la.Token); return err }, leaseapi.ErrStaleLease},
		{"unknown partition", func() error { return r.client.Complete(ctx, 999, la.Token, stats) }, leaseapi.ErrUnknownPartition},
		{"unknown partition renew", func() error { _, err := r.client.Renew(ctx, 999, "t"); return err }, leaseapi.ErrUnknownPartition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	st := r.c.Status()
	if st.Partitions.Done != 1 || st.Partitions.Leased != 1 || st.FilesTransferred != 1 || st.BytesTransferred != 5 {
		t.Fatalf("status = %+v; want one completion counted once and b still leased", st)
	}
}

func TestMaxAttemptsFailsOnlyThatPartition(t *testing.T) {
	tests := []struct {
		name      string
		retryable bool
		failures  int // fail calls before the partition is given up
	}{
		{"retryable errors use every attempt", true, 2},
		{"a non-retryable error fails at once", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, Config{Walk: staticWalk([][]string{{"bad"}, {"good"}}, []string{"."}), MaxAttempts: 2})
			ctx := context.Background()
			var fails int
			var done []string
			for {
				resp, err := r.client.Lease(ctx, "w", time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if resp.State == leaseapi.LeaseDone {
					break
				}
				if resp.State != leaseapi.LeaseGranted {
					continue
				}
				l := resp.Lease
				if l.Kind == leaseapi.KindFiles && l.Paths()[0] == "bad" {
					fails++
					if l.Attempt != fails {
						t.Fatalf("bad leased with attempt %d, want %d", l.Attempt, fails)
					}
					err := r.client.Fail(ctx, l.Partition, leaseapi.FailRequest{Token: l.Token, Error: "rsync exit 23", Retryable: tt.retryable, FailedPaths: []string{"bad"}})
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := r.client.Complete(ctx, l.Partition, l.Token, leaseapi.TransferStats{}); err != nil {
					t.Fatal(err)
				}
				done = append(done, string(l.Kind)+":"+l.Paths()[0])
			}
			if fails != tt.failures || !slices.Equal(done, []string{"files:good", "dirs:."}) {
				t.Fatalf("failed %d times (want %d), completed %q; want good, then the directory pass", fails, tt.failures, done)
			}
			st, err := r.wait(t)
			if !errors.Is(err, ErrPartitionsFailed) || !strings.Contains(err.Error(), "partition 1 ") {
				t.Fatalf("Run error = %v; want ErrPartitionsFailed naming partition 1", err)
			}
			if len(st.Failed) != 1 || st.Failed[0].Partition != 1 || st.Failed[0].Attempts != tt.failures ||
				st.Failed[0].Error != "rsync exit 23" || !slices.Equal(st.Failed[0].FailedPaths, []string{"bad"}) {
				t.Fatalf("failed = %+v", st.Failed)
			}
			if st.Partitions.Failed != 1 || st.Partitions.Done != 2 {
				t.Fatalf("counts = %+v", st.Partitions)
			}
		})
	}
}

func TestLongPoll(t *testing.T) {
	f := newFeed(".")
	r := start(t, Config{Walk: f.walk, MaxWait: time.Hour})
	ctx := context.Background()

	resp, err := r.client.Lease(ctx, "w", 0)
	if err != nil || resp.State != leaseapi.LeaseWait {
		t.Fatalf("lease without waiting on an empty queue = %+v, %v; want wait", resp, err)
	}
	got := make(chan leaseapi.LeaseResponse, 1)
	go func() {
		resp, err := r.client.Lease(ctx, "w", time.Hour)
		if err != nil {
			t.Error(err)
		}
		got <- resp
	}()
	eventually(t, "the long poll to wait", func() bool { return len(r.c.polls) == 1 })
	f.send("late")
	resp = <-got
	if resp.State != leaseapi.LeaseGranted || resp.Lease.Paths()[0] != "late" {
		t.Fatalf("long poll = %+v; want the partition produced later", resp)
	}
}

func TestLongPollCap(t *testing.T) {
	f := newFeed(".")
	r := start(t, Config{Walk: f.walk, MaxWait: time.Hour, MaxLongPolls: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := r.client.Lease(ctx, "a", time.Hour)
		first <- err
	}()
	eventually(t, "the first long poll to wait", func() bool { return len(r.c.polls) == 1 })
	// Past the cap, a lease that asks to wait an hour is answered at once.
	resp, err := r.client.Lease(context.Background(), "b", time.Hour)
	if err != nil || resp.State != leaseapi.LeaseWait {
		t.Fatalf("lease past the cap = %+v, %v; want wait", resp, err)
	}
	cancel()
	<-first
}

func TestReleaseWorker(t *testing.T) {
	r := start(t, Config{Walk: staticWalk([][]string{{"a"}, {"b"}, {"c"}}, []string{"."})})
	ctx := context.Background()
	mustLease(t, r.client, "gone")
	mustLease(t, r.client, "gone")
	kept := mustLease(t, r.client, "stays")
	n, err := r.client.Release(ctx, "gone")
	if err != nil || n != 2 {
		t.Fatalf("release = %d, %v; want 2", n, err)
	}
	again := mustLease(t, r.client, "stays")
	if again.Attempt != 1 {
		t.Fatalf("lease after release has attempt %d; a release must not count as an attempt", again.Attempt)
	}
	if err := r.client.Complete(ctx, kept.Partition, kept.Token, leaseapi.TransferStats{}); err != nil {
		t.Fatalf("the other worker's lease was disturbed: %v", err)
	}
	if n := r.c.ReleaseWorker("nobody"); n != 0 {
		t.Fatalf("ReleaseWorker(nobody) = %d", n)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/file"
	if err := writeFile(file, "x"); err != nil {
		t.Fatal(err)
	}
	walk := staticWalk(nil, nil)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing source", Config{Source: dir + "/nope", Token: "t", Walk: walk}, "does not exist"},
		{"source is a file", Config{Source: file, Token: "t", Walk: walk}, "not a directory"},
		{"no source", Config{Token: "t", Walk: walk}, "no source"},
		{"no token", Config{Source: dir, Walk: walk}, "token"},
		{"half TLS", Config{Source: dir, Token: "t", Walk: walk, TLSCertFile: file}, "TLS"},
		{"no partitioning mode", Config{Source: dir, Token: "t"}, "fpart options"},
		{"negative TTL", Config{Source: dir, Token: "t", Walk: walk, LeaseTTL: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, testLogger(t))
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("New = %v; want a one-line ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestWalkErrors(t *testing.T) {
	t.Run("a fatal walk error ends the run", func(t *testing.T) {
		boom := errors.New("boom")
		r := start(t, Config{Walk: func(context.Context, WalkHandler) error { return boom }})
		if _, err := r.wait(t); !errors.Is(err, boom) || errors.Is(err, ErrPartitionsFailed) {
			t.Fatalf("Run = %v; want the walk's error", err)
		}
	})
	t.Run("non-fatal walk errors are counted, the run goes on and ends incomplete", func(t *testing.T) {
		walk := func(ctx context.Context, h WalkHandler) error {
			h.Error("unreadable", errors.New("permission denied"))
			if err := h.Partition(part("a")); err != nil {
				return err
			}
			return h.Dir(".")
		}
		stateDir := filepath.Join(t.TempDir(), "state")
		r := start(t, Config{Walk: walk, StateDir: stateDir})
		drain(t, r.client, "w")
		st, err := r.wait(t)
		if st.WalkErrors != 1 || st.Partitions.Done != 2 {
			t.Fatalf("Run status = %+v; want 1 walk error and everything done", st)
		}
		if !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrWalkErrors) || errors.Is(err, ErrPartitionsFailed) {
			t.Fatalf("Run = %v; want ErrIncomplete and ErrWalkErrors, not ErrPartitionsFailed", err)
		}
		// The next run must walk again to reach what could not be read.
		if _, err := os.Stat(filepath.Join(stateDir, JournalFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("journal after a run with walk errors: %v; want it removed", err)
		}
	})
	t.Run("a clean finish removes the state dir it created", func(t *testing.T) {
		stateDir := filepath.Join(t.TempDir(), "state")
		r := start(t, Config{Walk: staticWalk([][]string{{"a"}}, []string{"."}), StateDir: stateDir})
		drain(t, r.client, "w")
		if _, err := r.wait(t); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("state dir after a clean finish: %v; want it removed (it was created by the run)", err)
		}
	})
}
