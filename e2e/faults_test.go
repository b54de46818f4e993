package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/leaseapi"
)

// The fault tests run the real binary as separate processes (one coordinator, several
// workers) and hurt them with real signals. "In the middle of a partition" is observed, not
// timed: the victim worker runs rsync through a wrapper that announces itself and then blocks
// on a FIFO, so the victim provably holds a lease when the signal arrives.

const faultToken = "fault-test-token"

// faultRun is one coordinator process with its source, destination and API client.
type faultRun struct {
	bin, src, dest, url, tokenFile string
	client                         *leaseapi.Client
	coordinator                    *process
}

// startFaultRun generates a tree and starts `krsync coordinator` on it with the given lease TTL.
func startFaultRun(t *testing.T, seed uint64, ttl time.Duration) *faultRun {
	t.Helper()
	bin := buildKrsync(t)
	testbin.Rsync(t)
	r := &faultRun{bin: bin, src: filepath.Join(t.TempDir(), "src"), dest: filepath.Join(t.TempDir(), "dest")}
	newHostileTree(t, r.src, hostileSpec(seed, 600, 0))
	if err := os.Mkdir(r.dest, 0o755); err != nil {
		t.Fatal(err)
	}
	r.tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(r.tokenFile, []byte(faultToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	r.url = "http://" + addr
	r.coordinator = startProcess(t, "coordinator", bin, "--log-format=json", "--log-level=debug", "coordinator",
		"--source", r.src, "--listen", addr, "--fpart-opts=-f 30 -zz",
		"--lease-ttl", ttl.String(), "--token-file", r.tokenFile, "--linger=5s",
		"--state-dir", filepath.Join(t.TempDir(), "state"))
	client, err := leaseapi.NewClient(r.url, leaseapi.ClientOptions{
		Token: faultToken, GiveUpAfter: 30 * time.Second, RetryWaitMin: 20 * time.Millisecond, RetryWaitMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.client = client
	return r
}

// startWorker starts `krsync worker` with rsync (or a wrapper of it) as its rsync binary.
func (r *faultRun) startWorker(t *testing.T, name, rsync string, extra ...string) *process {
	t.Helper()
	args := []string{"--log-format=json", "--log-level=debug", "worker",
		"--coordinator", r.url, "--source", r.src, "--dest", r.dest,
		"--token-file", r.tokenFile, "--name", name, "--rsync", rsync}
	return startProcess(t, name, r.bin, append(args, extra...)...)
}

// status polls the coordinator until cond holds for its status; the deadline guards a hang.
func (r *faultRun) waitStatus(t *testing.T, what string, cond func(leaseapi.Status) bool) leaseapi.Status {
	t.Helper()
	var last leaseapi.Status
	var lastErr error
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		st, err := r.client.Status(ctx)
		cancel()
		if err == nil && cond(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last status %+v (error %v)\ncoordinator log:\n%s", what, last.Partitions, lastErr, r.coordinator.Output())
	return last
}

// finish waits for the coordinator and the given workers to exit 0 and compares the trees.
func (r *faultRun) finish(t *testing.T, workers ...*process) {
	t.Helper()
	for _, w := range workers {
		if code := w.Wait(t); code != 0 {
			t.Errorf("%s exited %d:\n%s", w.Name, code, w.Output())
		}
	}
	if code := r.coordinator.Wait(t); code != 0 {
		t.Fatalf("coordinator exited %d:\n%s", code, r.coordinator.Output())
	}
	compareTrees(t, r.src, r.dest)
}

func TestFaultWorkerKilledMidPartitionIsReleasedAfterTTL(t *testing.T) {
	r := startFaultRun(t, 3101, 2*time.Second)
	gate := newRsyncGate(t, testbin.Rsync(t))
	victim := r.startWorker(t, "victim", gate.wrapper)
	gate.waitStarted(t, victim)
	held := r.waitStatus(t, "the victim's lease", func(st leaseapi.Status) bool { return st.Partitions.Leased >= 1 })

	var workers []*process
	for i := range 3 {
		workers = append(workers, r.startWorker(t, fmt.Sprintf("worker-%d", i+1), testbin.Rsync(t)))
	}
	// The others make progress while the victim still holds its partition.
	r.waitStatus(t, "progress by the other workers", func(st leaseapi.Status) bool {
		return st.Partitions.Done > held.Partitions.Done
	})
	victim.Signal(t, syscall.SIGKILL)
	if code := victim.Wait(t); code == 0 {
		t.Fatalf("the killed worker exited 0")
	}
	gate.killWrapper(t) // its rsync wrapper is an orphan now; it must not copy anything late
	// Only the TTL can free the victim's partition; the sync must still complete.
	r.finish(t, workers...)
}

func TestFaultWorkerTerminatedHandsLeaseBackAtOnce(t *testing.T) {
	// A TTL far beyond the test's deadline: only a hand-back can put the partition back.
	r := startFaultRun(t, 3102, time.Hour)
	gate := newRsyncGate(t, testbin.Rsync(t))
	victim := r.startWorker(t, "victim", gate.wrapper)
	gate.waitStarted(t, victim)
	r.waitStatus(t, "the victim's lease", func(st leaseapi.Status) bool { return st.Partitions.Leased == 1 })

	victim.Signal(t, syscall.SIGTERM)
	r.waitStatus(t, "the lease handed back", func(st leaseapi.Status) bool {
		return st.Partitions.Leased == 0 && st.Partitions.Done == 0 && st.Partitions.Pending >= 1
	})
	if code := victim.Wait(t); code == 0 {
		t.Errorf("a worker stopped by SIGTERM exited 0; the Job would stop replacing it")
	}
	if out := victim.Output(); !strings.Contains(out, "handed back") {
		t.Errorf("the worker's log does not say it handed its lease back:\n%s", out)
	}
	gate.killWrapper(t)

	// The partition is not lost: a fresh worker finishes the sync.
	r.finish(t, r.startWorker(t, "successor", testbin.Rsync(t)))
}

func TestFaultWorkerGivesUpOnUnreachableCoordinator(t *testing.T) {
	bin := buildKrsync(t)
	rsync := testbin.Rsync(t)
	src, dest := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := startProcess(t, "worker", bin, "worker", "--coordinator", "http://"+freeLoopbackAddr(t),
		"--source", src, "--dest", dest, "--rsync", rsync, "--give-up-after", "1s", "--name", "lonely")
	if code := w.Wait(t); code == 0 {
		t.Fatalf("worker exited 0 without a coordinator:\n%s", w.Output())
	}
	last := lastLine(w.Output())
	if !strings.Contains(last, "unreachable") || !strings.Contains(last, "krsync:") {
		t.Errorf("last line %q does not say the coordinator is unreachable", last)
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 {
		t.Errorf("the destination got %d entries", len(entries))
	}
}

func TestFaultWorkerRefusesBadSetupBeforeLeasing(t *testing.T) {
	bin := buildKrsync(t)
	rsync := testbin.Rsync(t)
	src := t.TempDir()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Nothing listens at the coordinator URL: a worker that got past its checks would wait
	// --give-up-after and then complain about the coordinator instead.
	url := "http://" + freeLoopbackAddr(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing destination", []string{"--dest", filepath.Join(t.TempDir(), "missing"), "--source", src}, "destination"},
		{"destination is a file", []string{"--dest", file, "--source", src}, "not a directory"},
		{"missing source", []string{"--dest", t.TempDir(), "--source", filepath.Join(src, "missing")}, "source"},
		{"rsync missing", []string{"--dest", t.TempDir(), "--source", src, "--rsync", "/nonexistent/rsync"}, "rsync"},
		{"refused rsync option", []string{"--dest", t.TempDir(), "--source", src, "--rsync-opts=-a --delete"}, "--delete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"worker", "--coordinator", url, "--give-up-after", "1m", "--rsync", rsync}, tt.args...)
			p := startProcess(t, "worker", bin, args...)
			code := p.Wait(t)
			out := strings.TrimSpace(p.Output())
			if code == 0 || strings.Count(out, "\n") != 0 || !strings.Contains(out, tt.want) || strings.Contains(out, "unreachable") {
				t.Errorf("exit %d, output %q: want a non-zero exit and one line naming %q", code, out, tt.want)
			}
		})
	}
}

func TestFaultLocalInterruptedRunResumes(t *testing.T) {
	tests := []struct {
		name     string
		sig      syscall.Signal
		stateDir bool // pass --state-dir instead of using the default one
		wantCode int
	}{
		{"Ctrl-C, default state directory", syscall.SIGINT, false, 130},
		{"SIGKILL, --state-dir", syscall.SIGKILL, true, -1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := buildKrsync(t)
			rsync := testbin.Rsync(t)
			w := newLocalWorld(t)
			newHostileTree(t, w.src, hostileSpec(uint64(3200+i), 500, 0))
			args := []string{"--log-format=json", "local", "--source", w.src, "--dest", w.dest,
				"--workers", "2", "--fpart-opts=-f 30 -zz"}
			stateDir := ""
			if tt.stateDir {
				stateDir = filepath.Join(t.TempDir(), "state")
				args = append(args, "--state-dir", stateDir)
			}

			// Three rsync runs pass, the later ones block: the run is provably in the middle.
			const passing = 3
			first := testbin.NewGatedRsync(t, rsync, passing)
			run := startProcessEnv(t, "krsync local", w.env(), bin, append(args, "--rsync", first.Wrapper)...)
			waitUntilFor(t, run, "a worker blocked in the middle of a partition", func() bool { return first.Blocked() > 0 })
			run.Signal(t, tt.sig)
			if code := run.Wait(t); code != tt.wantCode {
				t.Fatalf("interrupted run exited %d, want %d:\n%s", code, tt.wantCode, run.Output())
			}
			if tt.sig == syscall.SIGINT {
				if last := lastLine(run.Output()); !strings.Contains(last, "resume") {
					t.Errorf("last line %q does not say how to resume", last)
				}
			}
			if tt.stateDir {
				if _, err := os.Stat(filepath.Join(stateDir, "journal.db")); err != nil {
					t.Fatalf("the interrupted run left no journal in --state-dir: %v", err)
				}
			} else if len(w.leftovers(t)) == 0 {
				t.Fatalf("the interrupted run left no state to resume from")
			}

			// Between the runs the source changes: a file the first run copied gets new
			// contents of the same size, a top-level file and a deep new directory appear.
			// The rerun must copy all of it (its journal's finished partitions prove
			// nothing about today's source).
			changeSourceCopiedBefore(t, w.src, w.dest)

			second := testbin.NewGatedRsync(t, rsync, 1<<30)
			again := runKrsync(t, runOptions{env: w.env()}, append(args, "--rsync", second.Wrapper)...)
			if again.code != 0 {
				t.Fatalf("resumed run exited %d:\n%s", again.code, truncateLines(again.stderr, 60))
			}
			compareTrees(t, w.src, w.dest)
			rsyncSeesNoChanges(t, w.src, w.dest)
			// Its counts are those of one uninterrupted run of the same tree (into another
			// destination, which ends equal too): nothing walked twice, everything walked
			// copied; and what the first run copied is not copied again.
			resumed := summaryOf(t, again)
			freshDest := filepath.Join(t.TempDir(), "fresh")
			fresh := summaryOf(t, runKrsync(t, runOptions{env: w.env()}, "--log-format=json", "local", "--source", w.src,
				"--dest", freshDest, "--workers", "2", "--fpart-opts=-f 30 -zz"))
			compareTrees(t, w.src, freshDest)
			for _, field := range []string{"entries_walked", "bytes_walked"} {
				if got, want := summaryInt(t, resumed, field), summaryInt(t, fresh, field); got != want {
					t.Errorf("resumed run: %s %d, an uninterrupted run %d", field, got, want)
				}
			}
			if got, all := summaryInt(t, resumed, "files_transferred"), summaryInt(t, fresh, "files_transferred"); got >= all {
				t.Errorf("the resumed run transferred %d files, as many as a whole copy (%d): what the first run copied was copied again", got, all)
			}
			if copied, walked := summaryInt(t, resumed, "partitions_done"), summaryInt(t, resumed, "partitions_total"); copied != walked {
				t.Errorf("resumed run: %d of %d partitions done", copied, walked)
			}
			if left := w.leftovers(t); len(left) > 0 {
				t.Errorf("the finished run left state behind: %q", left)
			}
			if tt.stateDir {
				if _, err := os.Stat(filepath.Join(stateDir, "journal.db")); err == nil {
					t.Errorf("the finished run left its journal in --state-dir")
				}
			}
		})
	}
}

// changeSourceCopiedBefore changes the source after an interrupted run into dest: a
// regular file already copied gets other bytes of the same size and a later mtime, and
// new entries appear at the top level and three levels down.
func changeSourceCopiedBefore(t *testing.T, src, dest string) {
	t.Helper()
	var copied string
	err := filepath.WalkDir(dest, func(path string, d fs.DirEntry, err error) error {
		if err != nil || copied != "" {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".krsync-tmp-") {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() == 0 || info.Sys().(*syscall.Stat_t).Nlink != 1 {
			return err
		}
		copied, err = filepath.Rel(dest, path)
		return err
	})
	if err != nil || copied == "" {
		t.Fatalf("no regular file copied by the interrupted run in %s (%v)", dest, err)
	}
	path := filepath.Join(src, copied)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] ^= 0xff
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, time.Time{}, info.ModTime().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(src, "#new after the interruption", "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(src, "#top-level after the interruption"), filepath.Join(deep, "-deep")} {
		if err := os.WriteFile(f, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("changed %s after the interrupted run, added new entries", copied)
}

// waitUntilFor polls cond until it holds, failing early when p exits first.
func waitUntilFor(t *testing.T, p *process, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		select {
		case <-p.Done():
			t.Fatalf("%s exited while waiting for %s:\n%s", p.Name, what, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rsyncGate is an rsync wrapper that records its pid and then blocks on a FIFO forever, so a
// worker using it holds its lease until the test acts.
type rsyncGate struct {
	wrapper, pidFile string
}

func newRsyncGate(t *testing.T, rsync string) rsyncGate {
	t.Helper()
	dir := t.TempDir()
	g := rsyncGate{wrapper: filepath.Join(dir, "rsync-gate"), pidFile: filepath.Join(dir, "pid")}
	fifo := filepath.Join(dir, "gate")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The pid file appears whole (rename), then the wrapper blocks opening the FIFO.
	script := fmt.Sprintf("#!/bin/sh\necho $$ > '%[1]s.tmp' && mv '%[1]s.tmp' '%[1]s'\nread line < '%[2]s'\nexec '%[3]s' \"$@\"\n",
		g.pidFile, fifo, rsync)
	if err := os.WriteFile(g.wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.killWrapper(t) })
	return g
}

// waitStarted waits until the wrapper runs for worker w.
func (g rsyncGate) waitStarted(t *testing.T, w *process) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(g.pidFile); err == nil {
			return
		}
		select {
		case <-w.Done():
			t.Fatalf("%s exited before its rsync started:\n%s", w.Name, w.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the gated rsync of %s:\n%s", w.Name, w.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killWrapper kills the blocked wrapper, if it still runs.
func (g rsyncGate) killWrapper(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(g.pidFile)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// process is a child process whose combined output is kept for failure messages.
type process = testbin.Process

func startProcess(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	return startProcessEnv(t, name, nil, bin, args...)
}

// startProcessEnv is startProcess with env (KEY=VALUE) added to the environment.
func startProcessEnv(t *testing.T, name string, env []string, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "KRSYNC_TOKEN="), env...) // only the token file counts
	return testbin.StartProcess(t, name, cmd, true)
}

// freeLoopbackAddr returns a loopback address nothing listens on right now.
func freeLoopbackAddr(t *testing.T) string { return testbin.FreeLoopbackAddr(t) }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
