package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
)

// The tests in this file run the krsync binary as a child process, to interrupt it for real.

// krsyncBinary is this command, built once per test binary.
func krsyncBinary(t *testing.T) string { return testbin.Krsync(t) }

// interruptLocal runs `krsync local args...` as a child process until the gated rsync blocks
// a run (every earlier partition is then done and journaled: one worker reports before it
// leases the next), and kills it with SIGKILL.
func interruptLocal(t *testing.T, gate testbin.GatedRsync, args ...string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(krsyncBinary(t), append([]string{"--log-format=json", "local", "--workers", "1", "--rsync", gate.Wrapper}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for gate.Blocked() == 0 {
		select {
		case err := <-exited:
			t.Fatalf("krsync local exited (%v) before a partition was blocked:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("no rsync run was blocked within a minute:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
}

// sourceOfFiles writes n files in n directories (with -f 1, one partition each).
func sourceOfFiles(t *testing.T, n int) string {
	t.Helper()
	src := t.TempDir()
	for i := range n {
		p := filepath.Join(src, fmt.Sprintf("d%02d", i), "f")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat("x", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// TestLocalForeignJournalIsNotReused: a run to D1 is killed after two partitions are done;
// the same --state-dir with --dest D2 must not skip those partitions in D2 (issue 9, item 2:
// it used to end 0 with them missing). It is refused (exit 2, one line naming --state-dir),
// and the interrupted copy to D1 still resumes and ends equal to the source.
func TestLocalForeignJournalIsNotReused(t *testing.T) {
	rsync := testbin.Rsync(t)
	src := sourceOfFiles(t, 8)
	root := t.TempDir()
	d1, d2, stateDir := filepath.Join(root, "d1"), filepath.Join(root, "d2"), filepath.Join(root, "state")
	args := func(dest string) []string {
		return []string{"--source", src, "--dest", dest, "--state-dir", stateDir, "--fpart-opts=-f 1 -zz", "--progress=never"}
	}
	interruptLocal(t, testbin.NewGatedRsync(t, rsync, 2), args(d1)...)

	code, stderr := runLocal(t, args(d2)...)
	switch {
	case code == 2:
		last := lastNonEmptyLine(stderr)
		if !strings.HasPrefix(last, "krsync: ") || !strings.Contains(last, "--state-dir") {
			t.Errorf("exit 2, last line %q: want one line naming --state-dir", last)
		}
	case code == 0:
		if err := treecmp.Equal(src, d2, treecmp.Options{}); err != nil {
			t.Errorf("exit 0 but the destination differs: %v", err)
		}
	default:
		t.Fatalf("--dest %s on the state of a run to %s: exit %d, want 2 (refused) or 0 with an equal copy:\n%s", d2, d1, code, stderr)
	}

	if code, stderr := runLocal(t, args(d1)...); code != 0 {
		t.Fatalf("resuming the run to %s: exit %d:\n%s", d1, code, stderr)
	}
	if err := treecmp.Equal(src, d1, treecmp.Options{}); err != nil {
		t.Fatalf("resumed copy: %v", err)
	}
}
