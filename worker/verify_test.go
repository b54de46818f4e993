package worker

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/verify"
)

// TestVerifyLeasesSpreadOverTwoWorkers runs a --verify copy with the real coordinator and
// two real workers over HTTP on loopback: both workers run verify leases (one directory
// each), and the comparison finds what the copy leaves different: an extraneous file (no
// --mirror) and two files linked in the destination whose source names are apart, in
// directories of different leases (rsync leaves them alone: each equals its source).
func TestVerifyLeasesSpreadOverTwoWorkers(t *testing.T) {
	rsync := testbin.Rsync(t)
	src := t.TempDir()
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	write := func(rel, content string) {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 60 {
		write(fmt.Sprintf("d%02d/f", i), fmt.Sprint(i))
	}
	write("p/x", "twin")
	write("q/y", "twin")
	dest := t.TempDir()
	if out, err := exec.Command(rsync, "-a", src+"/", dest+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	if err := os.Remove(filepath.Join(dest, "q/y")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dest, "p/x"), filepath.Join(dest, "q/y")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "d07/extra"), []byte("dest only"), 0o644); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var diffs []verify.Difference
	opts, err := coordinator.ParsePartitioner("-f 8 -zz", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	url, runCoordinator := serveCoordinator(t, coordinator.Config{
		Source: src, Dest: dest, Partitioner: opts, Token: fakeToken, Linger: 10 * time.Second,
		Verify: &coordinator.VerifyConfig{DirsPerPartition: 1, Report: func(d verify.Difference) {
			mu.Lock()
			diffs = append(diffs, d)
			mu.Unlock()
		}},
	})

	var logs [2]*testbin.Buffer
	var waits [2]func() error
	for i := range logs {
		logs[i] = &testbin.Buffer{}
		// Options under which the copy leaves the destination's own hard link p/x = q/y
		// alone (rsync's quick check; with the defaults the worker would unlink it first),
		// so that the verify leases have it to find.
		cfg := Config{Client: newClient(t, url, 5*time.Second), Name: fmt.Sprintf("w%d", i), Source: src, Dest: dest,
			RsyncBinary: rsync, Wait: time.Second, RsyncArgs: []string{"--archive", "--numeric-ids", "--hard-links", "--size-only"}}
		log := zerolog.New(logs[i]).Level(zerolog.DebugLevel)
		errc := make(chan error, 1)
		go func() { errc <- Run(t.Context(), cfg, log) }()
		waits[i] = func() error { return await(t, errc, cfg.Name) }
	}
	for i, wait := range waits {
		if err := wait(); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	st, err := runCoordinator()
	if err != nil {
		t.Fatalf("coordinator: %v", err)
	}
	for i, l := range logs {
		if n := strings.Count(l.String(), `"message":"verify lease done"`); n == 0 {
			t.Errorf("worker %d ran no verify lease:\n%s", i, l.String())
		}
	}
	v := st.Verify
	if v == nil || v.State != leaseapi.VerifyDone || v.DirsDone != 63 || v.Differences != 3 {
		t.Errorf("verify status %+v: want done over the 63 directories, 3 differences", v)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, d := range diffs {
		got = append(got, string(d.Kind)+" "+d.Path)
	}
	slices.Sort(got)
	if want := []string{"extra d07/extra", "hardlink p/x", "hardlink q/y"}; !slices.Equal(got, want) {
		t.Errorf("differences %q, want %q", got, want)
	}
}

// TestRunRefusesAnUnknownLeaseKind: a lease of a kind this worker does not know (from a
// newer coordinator) is failed, retryable, naming the kind, and nothing runs for it (the
// rsync binary does not even exist); the worker goes on.
func TestRunRefusesAnUnknownLeaseKind(t *testing.T) {
	l := fileLease(1, "a")
	l.Kind = "compress"
	fake, srv := newFakeCoordinator(t, l)
	cfg := baseConfig(t, srv.URL, sourceTree(t))
	cfg.RsyncBinary = filepath.Join(t.TempDir(), "no-rsync")
	if err := startWorker(t, t.Context(), cfg)(); err != nil {
		t.Fatalf("Run: %v, want the worker to go on after refusing the lease", err)
	}
	_, _, completes, fails := fake.snapshot()
	f, ok := fails[1]
	if !ok || len(completes) != 0 || !f.Retryable || !strings.Contains(f.Error, `lease kind "compress"`) {
		t.Errorf("completes %v, fails %+v: want lease 1 failed, retryable, naming its kind", completes, fails)
	}
}

// TestVerifyLeaseThatCannotCompareFails: a verify lease whose destination root this worker
// cannot open fails, retryable (another worker may see the trees), and the worker goes on.
func TestVerifyLeaseThatCannotCompareFails(t *testing.T) {
	l := fileLease(1, ".")
	l.Kind, l.Verify = leaseapi.KindVerify, &leaseapi.Verify{}
	fake, srv := newFakeCoordinator(t, l)
	cfg := baseConfig(t, srv.URL, sourceTree(t))
	cfg.Dest = filepath.Join(t.TempDir(), "not-mounted")
	if err := startWorker(t, t.Context(), cfg)(); err != nil {
		t.Fatalf("Run: %v, want the worker to go on", err)
	}
	_, _, completes, fails := fake.snapshot()
	if f, ok := fails[1]; !ok || len(completes) != 0 || !f.Retryable || !strings.Contains(f.Error, "not-mounted") {
		t.Errorf("completes %v, fails %+v: want lease 1 failed, retryable, naming the destination", completes, fails)
	}
}
