package coordinator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/verify"
)

func TestOwnNamesAreAnchoredAndQuoted(t *testing.T) {
	// krsync's temporary directories: the prefix, 12 hex digits, each rsync run's suffix.
	hex12 := strings.Repeat("[0-9a-f]", 12)
	tmp := func(root string) []string {
		return []string{root + "/.krsync-tmp-" + hex12, root + "/.krsync-tmp-" + hex12 + ".*"}
	}
	tests := []struct {
		name, source, dest, stateDir string
		want                         []string
	}{
		{"no state dir", "/data/src", "/data/dst", "", tmp("/data/src")},
		{"state dir outside", "/src", "/dst", "/var/lib/krsync", tmp("/src")},
		{"state dir in dest", "/src/", "/dest", "/dest/.krsync-state", append(tmp("/src"), "/src/.krsync-state")},
		{"glob characters", "/a*b/[c]?", "/dest", "/dest/s*", append(tmp(`/a\*b/\[c]\?`), `/a\*b/\[c]\?/s\*`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ownNames(tc.source, tc.dest, tc.stateDir)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("ownNames = %q, want %q", got, tc.want)
			}
		})
	}
	// A source name that merely starts with the prefix is compared, not left out.
	filter := fpart.NewFilter(fpart.Options{ExcludeFold: nil, Exclude: ownNames("/src", "/dst", "")}, "/src")
	for name, skipped := range map[string]bool{".krsync-tmp-0123456789ab": true, ".krsync-tmp-0123456789ab.p3-a1-x": true, ".krsync-tmp-mine": false} {
		if got := filter.Skips(name, true); got != skipped {
			t.Errorf("%s: left out %v, want %v", name, got, skipped)
		}
	}
}

// verifyRun is a coordinator over a fixed walk with --verify, two verify directories per
// lease, and the differences it passes on.
type verifyRun struct {
	*running
	mu    sync.Mutex
	diffs []verify.Difference
}

func startVerify(t *testing.T, cfg Config) *verifyRun {
	t.Helper()
	r := &verifyRun{}
	cfg.Linger = time.Second // for the workers of these tests that are never told "done"
	cfg.Walk = staticWalk([][]string{{"p/x"}, {"q/y"}}, []string{".", "p", "q", "r", "s"})
	cfg.Verify = &VerifyConfig{DirsPerPartition: 2, Report: func(d verify.Difference) {
		r.mu.Lock()
		r.diffs = append(r.diffs, d)
		r.mu.Unlock()
	}}
	r.running = start(t, cfg)
	return r
}

// TestVerifyLeasesComeAfterTheCopy: the verify leases hold every walked directory, come
// only once the file and directory partitions are done, carry how to compare, and their
// reports add up; hard-linked names reported by different leases are judged together.
func TestVerifyLeasesComeAfterTheCopy(t *testing.T) {
	r := startVerify(t, Config{})
	var kinds []leaseapi.Kind
	var dirs []string
	for {
		resp, err := r.client.Lease(context.Background(), "w", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.State == leaseapi.LeaseDone {
			break
		}
		if resp.State != leaseapi.LeaseGranted {
			continue
		}
		l := *resp.Lease
		kinds = append(kinds, l.Kind)
		var stats leaseapi.TransferStats
		if l.Kind == leaseapi.KindVerify {
			if l.Verify == nil || l.Verify.WalkRoot != r.c.cfg.Source || !slices.Contains(l.Verify.Exclude, globQuote(r.c.cfg.Source)+"/"+TempDirPrefix+strings.Repeat("[0-9a-f]", 12)) {
				t.Fatalf("verify lease %d says %+v: want the walk root and krsync's own names", l.Partition, l.Verify)
			}
			paths := l.Paths()
			if len(paths) > 2 {
				t.Errorf("verify lease %d holds %q: more than 2 directories", l.Partition, paths)
			}
			dirs = append(dirs, paths...)
			// Each lease reports one difference; the leases holding p and q each report a
			// name of one destination inode whose source names are apart.
			rep := &leaseapi.VerifyReport{Dirs: int64(len(paths)), Entries: 3, Differences: 1, ByKind: map[string]int64{"mtime": 1},
				Listed: []leaseapi.VerifyDifference{{Path: []byte(paths[0]), Kind: "mtime", Source: []byte("1"), Dest: []byte("2")}}}
			for _, p := range paths {
				switch p {
				case "p":
					rep.Links = append(rep.Links, leaseapi.VerifyLink{Path: []byte("p/x"), Source: &leaseapi.VerifyInode{Ino: 1}, Dest: &leaseapi.VerifyInode{Ino: 9}, Compared: true})
				case "q":
					rep.Links = append(rep.Links, leaseapi.VerifyLink{Path: []byte("q/y"), Source: &leaseapi.VerifyInode{Ino: 2}, Dest: &leaseapi.VerifyInode{Ino: 9}, Compared: true})
				}
			}
			stats.Verify = rep
			if st := r.c.Status(); st.Verify == nil || st.Verify.State != leaseapi.VerifyRunning || st.Verify.Dirs != 5 {
				t.Errorf("status while verifying: %+v, want running over 5 directories", st.Verify)
			}
		}
		if err := r.client.Complete(context.Background(), l.Partition, l.Token, stats); err != nil {
			t.Fatalf("complete %s lease %d: %v", l.Kind, l.Partition, err)
		}
	}
	st, err := r.wait(t)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	first := slices.Index(kinds, leaseapi.KindVerify)
	if first < 0 || slices.ContainsFunc(kinds[first:], func(k leaseapi.Kind) bool { return k != leaseapi.KindVerify }) ||
		!slices.Contains(kinds[:first], leaseapi.KindDirs) {
		t.Errorf("lease kinds in order %v: want the verify leases last, after the directory pass", kinds)
	}
	slices.Sort(dirs)
	if want := []string{".", "p", "q", "r", "s"}; !slices.Equal(dirs, want) {
		t.Errorf("verify leases hold %q, want every walked directory once: %q", dirs, want)
	}
	v := st.Verify
	if v == nil || v.State != leaseapi.VerifyDone || v.DirsDone != 5 || v.Differences != 3+2 || v.ByKind["mtime"] != 3 || v.ByKind["hardlink"] != 2 {
		t.Errorf("final verify status %+v: want done, 5 directories, 3 mtime and 2 hardlink differences", v)
	}
	// /metrics counts what the status counts, by kind.
	families, err := r.c.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "krsync_verify_differences_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			byKind[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if byKind["mtime"] != 3 || byKind["hardlink"] != 2 {
		t.Errorf("krsync_verify_differences_total %v, want mtime 3 and hardlink 2", byKind)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var links []string
	for _, d := range r.diffs {
		if d.Kind == verify.HardLink {
			links = append(links, d.Path)
		}
	}
	if len(r.diffs) != 5 || !slices.Equal(links, []string{"p/x", "q/y"}) {
		t.Errorf("differences passed on: %v, want the 3 listed and hardlink p/x, q/y", r.diffs)
	}
}

// TestVerifyLeaseCompletedWithoutReport: a worker that does not know verify leases (it ran
// the lease as something else) cannot complete one: the completion is refused, and the
// partition fails for good with a message that says why.
func TestVerifyLeaseCompletedWithoutReport(t *testing.T) {
	r := startVerify(t, Config{})
	var refused error
	for refused == nil {
		l := mustLease(t, r.client, "old-worker")
		err := r.client.Complete(context.Background(), l.Partition, l.Token, leaseapi.TransferStats{})
		if l.Kind == leaseapi.KindVerify {
			refused = err
			if err == nil {
				t.Fatal("a verify lease completed without a report was accepted")
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(refused.Error(), "does not know verify leases") {
		t.Errorf("refusal %q does not say why", refused)
	}
	drainVerify(t, r.client)
	_, err := r.wait(t)
	if !errors.Is(err, ErrPartitionsFailed) || !strings.Contains(err.Error(), "does not know verify leases") {
		t.Errorf("Run: %v, want the verify lease failed for good, saying why", err)
	}
}

// drainVerify completes every lease left, verify leases with an empty report.
func drainVerify(t *testing.T, cl *leaseapi.Client) {
	t.Helper()
	for {
		resp, err := cl.Lease(context.Background(), "w", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch resp.State {
		case leaseapi.LeaseDone:
			return
		case leaseapi.LeaseGranted:
			var stats leaseapi.TransferStats
			if resp.Lease.Kind == leaseapi.KindVerify {
				stats.Verify = &leaseapi.VerifyReport{}
			}
			if err := cl.Complete(context.Background(), resp.Lease.Partition, resp.Lease.Token, stats); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestVerifyLeaseExpiresAndIsReissued: a verify lease that is not renewed goes back to the
// queue like any other, and its second attempt's report is the one counted.
func TestVerifyLeaseExpiresAndIsReissued(t *testing.T) {
	r := startVerify(t, Config{LeaseTTL: 200 * time.Millisecond})
	var lost leaseapi.Lease
	for lost.Kind != leaseapi.KindVerify {
		lost = mustLease(t, r.client, "doomed")
		if lost.Kind != leaseapi.KindVerify {
			if err := r.client.Complete(context.Background(), lost.Partition, lost.Token, leaseapi.TransferStats{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var again leaseapi.Lease
	for again.Partition != lost.Partition {
		again = mustLease(t, r.client, "survivor")
		if again.Partition != lost.Partition {
			if err := r.client.Complete(context.Background(), again.Partition, again.Token, leaseapi.TransferStats{Verify: &leaseapi.VerifyReport{}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if again.Attempt != 2 || again.Kind != leaseapi.KindVerify || !slices.Equal(again.Paths(), lost.Paths()) {
		t.Fatalf("re-issued lease %+v, want attempt 2 of the lost verify lease %+v", again, lost)
	}
	err := r.client.Complete(context.Background(), lost.Partition, lost.Token, leaseapi.TransferStats{Verify: &leaseapi.VerifyReport{Differences: 7}})
	if !errors.Is(err, leaseapi.ErrStaleLease) {
		t.Errorf("the expired lease's late report: %v, want refused as stale", err)
	}
	rep := &leaseapi.VerifyReport{Dirs: int64(len(again.Paths())), Differences: 1, ByKind: map[string]int64{"size": 1}}
	if err := r.client.Complete(context.Background(), again.Partition, again.Token, leaseapi.TransferStats{Verify: rep}); err != nil {
		t.Fatal(err)
	}
	drainVerify(t, r.client)
	st, err := r.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	if v := st.Verify; v == nil || v.Differences != 1 || v.ByKind["size"] != 1 || v.DirsDone != 5 {
		t.Errorf("verify status %+v: want the second attempt's one difference counted once, every directory done", st.Verify)
	}
}

// TestVerifySkippedWhenTheCopyIsIncomplete: no verify lease when a partition failed.
func TestVerifySkippedWhenTheCopyIsIncomplete(t *testing.T) {
	r := startVerify(t, Config{})
	l := mustLease(t, r.client, "w")
	if err := r.client.Fail(context.Background(), l.Partition, leaseapi.FailRequest{Token: l.Token, Error: "broken"}); err != nil {
		t.Fatal(err)
	}
	for _, l := range drain(t, r.client, "w") {
		if l.Kind == leaseapi.KindVerify {
			t.Errorf("verify lease %d handed out after a failed partition", l.Partition)
		}
	}
	st, err := r.wait(t)
	if !errors.Is(err, ErrPartitionsFailed) || st.Verify == nil || st.Verify.State != leaseapi.VerifySkipped {
		t.Errorf("Run: %v, verify %+v: want the failed partition, verify skipped", err, st.Verify)
	}
}

func TestVerifyRefusesWhatItCannotCompare(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"-X", Config{Partitioner: fpart.Options{ExcludeFold: []string{"*.TMP"}}}, "-X, -y or -Y"},
		{"dry run", Config{Mirror: true, DryRun: true}, "dry run copies nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Source, cfg.Token, cfg.Verify = t.TempDir(), testToken, &VerifyConfig{}
			if _, err := New(cfg, testLogger(t)); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an invalid configuration naming %q", err, tc.want)
			}
		})
	}
}
