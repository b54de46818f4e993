package testbin

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// GatedRsync is an rsync wrapper that records every run and lets the first passing ones
// through; every later run records its pid and blocks on a FIFO that nobody writes, so a
// test can stop a copy at a known point without sleeps (Blocked() > 0 means a worker holds
// a partition whose rsync has not started copying). The blocked wrappers are killed when the
// test ends.
type GatedRsync struct {
	// Wrapper is the program to pass as krsync's --rsync.
	Wrapper             string
	runsDir, blockedDir string
}

// NewGatedRsync writes the wrapper around rsync for the test.
func NewGatedRsync(t testing.TB, rsync string, passing int) GatedRsync {
	t.Helper()
	dir := t.TempDir()
	g := GatedRsync{Wrapper: filepath.Join(dir, "rsync-gated"), runsDir: filepath.Join(dir, "runs"), blockedDir: filepath.Join(dir, "blocked")}
	fifo := filepath.Join(dir, "gate")
	for _, d := range []string{g.runsDir, g.blockedDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
mktemp '%[1]s/run.XXXXXX' >/dev/null
if [ "$(ls '%[1]s' | wc -l)" -gt %[2]d ]; then
  : > '%[3]s/'$$
  read line < '%[4]s'
fi
exec '%[5]s' "$@"
`, g.runsDir, passing, g.blockedDir, fifo, rsync)
	if err := os.WriteFile(g.Wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(g.blockedDir)
		for _, e := range entries {
			if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return g
}

// Runs is how many times the wrapper was started.
func (g GatedRsync) Runs() int { return countEntries(g.runsDir) }

// Blocked is how many runs are blocked on the gate.
func (g GatedRsync) Blocked() int { return countEntries(g.blockedDir) }

func countEntries(dir string) int {
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

// FreeLoopbackAddr returns a loopback address (host:port) nothing listens on right now: for a
// process under test to listen on, or for a client to find nobody there.
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
