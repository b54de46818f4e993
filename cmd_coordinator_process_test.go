package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/leaseapi"
)

// child is a krsync child process with its output kept for failure messages.
type child = testbin.Process

// startChild runs prefix... then the krsync binary with args, KRSYNC_TOKEN set.
func startChild(t *testing.T, prefix []string, args ...string) *child {
	t.Helper()
	argv := append(append(append([]string(nil), prefix...), krsyncBinary(t)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "KRSYNC_TOKEN=process-test-token")
	c := testbin.StartProcess(t, strings.Join(argv, " "), cmd, true)
	c.Timeout = 2 * time.Minute
	return c
}

// needSetpriv returns setpriv when the test runs as root and setpriv can drop caps.
func needSetpriv(t *testing.T, drop string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: the test takes capabilities away from root")
	}
	setpriv := testbin.Program(t, "setpriv")
	if out, err := exec.Command(setpriv, "--inh-caps="+drop, "--bounding-set="+drop, "true").CombinedOutput(); err != nil {
		testbin.SkipOrFail(t, "setpriv cannot drop "+drop+" here: "+strings.TrimSpace(string(out)))
	}
	return setpriv
}

// TestCoordinatorMtimeRestoreFailureIsIncomplete: the coordinator runs as root without
// CAP_FOWNER (the manifests used to grant DAC_OVERRIDE only) on a destination owned by
// someone else, with its state directory in the destination. Removing the state directory
// at the end changes the destination root's mtime, and putting it back fails: the run must
// end incomplete (exit 1, one line saying why), not 0 with a wrong mtime (issue 9, item 10).
func TestCoordinatorMtimeRestoreFailureIsIncomplete(t *testing.T) {
	setpriv := needSetpriv(t, "-fowner")
	src := smallSource(t)
	dest := filepath.Join(t.TempDir(), "dest")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dest, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	coord := startChild(t, []string{setpriv, "--inh-caps=-fowner", "--bounding-set=-fowner"},
		"--log-level=warn", "coordinator", "--source", src, "--dest", dest, "--state-dir", filepath.Join(dest, ".krsync-state"),
		"--listen", addr, "--files-per-partition", "2", "--linger", "10s")
	completeAll(t, "http://"+addr, coord)
	code := coord.Wait(t)
	last := lastNonEmptyLine(coord.Output())
	if code != 1 || !strings.HasPrefix(last, "krsync: ") || !strings.Contains(last, "mtime") {
		t.Fatalf("exit %d, last line %q; want exit 1 and one line about the mtime:\n%s", code, last, coord.Output())
	}
	if _, err := os.Lstat(filepath.Join(dest, ".krsync-state")); err == nil {
		t.Error("the state directory is still there")
	}
}

// completeAll plays a worker that completes every partition, until the coordinator says done.
func completeAll(t *testing.T, url string, coord *child) {
	t.Helper()
	cl, err := leaseapi.NewClient(url, leaseapi.ClientOptions{Token: "process-test-token", GiveUpAfter: 30 * time.Second,
		RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := cl.Lease(context.Background(), "test-worker", time.Second)
		if err != nil {
			t.Fatalf("lease: %v\ncoordinator:\n%s", err, coord.Output())
		}
		if resp.State == leaseapi.LeaseDone {
			return
		}
		if resp.State != leaseapi.LeaseGranted {
			continue
		}
		l := resp.Lease
		if err := cl.Complete(context.Background(), l.Partition, l.Token, leaseapi.TransferStats{}); err != nil {
			t.Fatalf("complete: %v", err)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestCoordinatorRerunAfterFailedPartitionWalksAgain: a partition fails (a file rsync cannot
// read: the worker's rsync runs as root without the capabilities that read any file), the
// coordinator exits 1; the user fixes the file and adds new ones and runs the same commands
// again: exit 0 and the destination equals the source (issue 9, item 3: the rerun used to
// resume the old journal, skip the walk and end 0 without the fixed and the new files).
func TestCoordinatorRerunAfterFailedPartitionWalksAgain(t *testing.T) {
	rsync := testbin.Rsync(t)
	setpriv := needSetpriv(t, "-dac_override,-dac_read_search")
	noDAC := filepath.Join(t.TempDir(), "rsync-no-dac")
	script := "#!/bin/sh\nexec " + setpriv + " --inh-caps=-dac_override,-dac_read_search --bounding-set=-dac_override,-dac_read_search " + rsync + " \"$@\"\n"
	if err := os.WriteFile(noDAC, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	src := smallSource(t)
	locked := filepath.Join(src, "dir", "locked")
	if err := os.WriteFile(locked, []byte("secret"), 0o000); err != nil {
		t.Fatal(err)
	}
	dest, stateDir := t.TempDir(), filepath.Join(t.TempDir(), "state")
	run := func() (coordCode int, coord, worker *child) {
		addr := freeAddr(t)
		coord = startChild(t, nil, "--log-level=warn", "coordinator", "--source", src, "--dest", dest, "--state-dir", stateDir,
			"--listen", addr, "--files-per-partition", "2", "--max-attempts", "1", "--linger", "10s")
		worker = startChild(t, nil, "--log-level=warn", "worker", "--coordinator", "http://"+addr, "--source", src, "--dest", dest,
			"--rsync", noDAC, "--name", "w1", "--give-up-after", "1m")
		return coord.Wait(t), coord, worker
	}
	code, coord, worker := run()
	if code != 1 {
		t.Fatalf("first run: coordinator exit %d, want 1 (a partition failed):\n%s\nworker:\n%s", code, coord.Output(), worker.Output())
	}
	worker.Wait(t)

	if err := os.Chmod(locked, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"new-file", "dir/new too"} {
		if err := os.WriteFile(filepath.Join(src, rel), []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, coord, worker = run()
	if code != 0 {
		t.Fatalf("rerun: coordinator exit %d, want 0:\n%s\nworker:\n%s", code, coord.Output(), worker.Output())
	}
	if code := worker.Wait(t); code != 0 {
		t.Fatalf("rerun: worker exit %d:\n%s", code, worker.Output())
	}
	if err := treecmp.Equal(src, dest, treecmp.Options{}); err != nil {
		t.Fatalf("after the rerun: %v", err)
	}
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
