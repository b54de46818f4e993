package coordinator

import (
	"github.com/krsync/krsync/internal/testing/testbin"

	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The process tests run the real krsync binary, the real rsync and real signals.

// krsyncBinary is the krsync command, built once per test binary.
func krsyncBinary(t *testing.T) string { return testbin.Krsync(t) }

// makeTree writes a generated tree of files, directories, an empty directory and symlinks
// under dir and returns how many regular files it holds.
func makeTree(t *testing.T, dir string, seed uint64, files int) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	names := []string{"plain", "with space", "new\nline", "-dash", "tab\tname", "bad\xffutf8"}
	for i := range files {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", rng.IntN(6)), fmt.Sprintf("e%d", rng.IntN(3)))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, rng.IntN(32<<10))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		p := filepath.Join(sub, fmt.Sprintf("%s-%d", names[i%len(names)], i))
		if err := os.WriteFile(p, data, os.FileMode(0o600+rng.IntN(0o100))); err != nil {
			t.Fatal(err)
		}
		mtime := time.Unix(1_600_000_000+int64(rng.IntN(1_000_000)), 0)
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"empty", "d0/empty too"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../nowhere", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "d1", "outside")); err != nil {
		t.Fatal(err)
	}
	return files
}

// proc is a child process with its output kept for the failure message.
type proc struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func startProc(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...)}
	p.cmd.Env = append(os.Environ(), env...)
	w := &syncWriter{w: &p.out}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (p *proc) output() string {
	w := p.cmd.Stdout.(*syncWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.out.String()
}

// waitExit waits for the process to exit and returns its exit code.
func (p *proc) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not exit within %s; output:\n%s", p.cmd.Args[1], within, p.output())
	}
	return -1
}

func freePort(t *testing.T) string { return testbin.FreeLoopbackAddr(t) }

// TestCoordinatorSurvivesSIGKILL copies a generated tree with a coordinator process and two
// worker processes, kills the coordinator with SIGKILL three times at random points and
// restarts it with the same arguments. Each restart walks afresh (the source may have changed
// meanwhile). The copy must end equal to the source (rsync's own dry-run check finds
// nothing, directory times included), and nothing copied is copied again: the files rsync
// reports transferred are at most the tree's files plus what was in flight at each kill.
func TestCoordinatorSurvivesSIGKILL(t *testing.T) {
	rsync := testbin.Rsync(t)
	bin := krsyncBinary(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	src, dst, stateDir := t.TempDir(), t.TempDir(), t.TempDir()
	const filesPerPartition = 3
	nfiles := makeTree(t, src, seed, 150)
	addr := freePort(t)
	env := []string{"KRSYNC_TOKEN=" + testToken, "KRSYNC_LOG_FORMAT=json"}
	coordArgs := []string{"coordinator", "--source", src, "--listen", addr, "--state-dir", stateDir,
		"--files-per-partition", strconv.Itoa(filesPerPartition), "--lease-ttl", "3s", "--linger", "20s", "--log-level", "debug"}
	coord := startProc(t, env, bin, coordArgs...)
	incarnations := []*proc{coord}
	var workers []*proc
	for i := range 2 {
		workers = append(workers, startProc(t, env, bin, "worker", "--coordinator", "http://"+addr,
			"--source", src, "--dest", dst, "--name", fmt.Sprintf("w%d", i), "--give-up-after", "2m"))
	}
	cl := newClient(t, "http://"+addr, testToken)
	rng := rand.New(rand.NewPCG(seed, 1))
	threshold := int64(0)
	for kill := range 3 {
		threshold += 1 + int64(rng.IntN(12))
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := cl.Status(ctx)
			cancel()
			if err == nil && (st.Partitions.Done >= threshold || st.Finished) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: %d partitions never done; last status %+v, %v\ncoordinator:\n%s", kill, threshold, st, err, coord.output())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := coord.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		coord.waitExit(t, 30*time.Second)
		t.Logf("kill %d after %d partitions done; restarting", kill+1, threshold)
		coord = startProc(t, env, bin, coordArgs...)
		incarnations = append(incarnations, coord)
	}
	if code := coord.waitExit(t, 3*time.Minute); code != 0 {
		t.Fatalf("coordinator exit %d; output:\n%s", code, coord.output())
	}
	for i, w := range workers {
		if code := w.waitExit(t, time.Minute); code != 0 {
			t.Fatalf("worker %d exit %d; output:\n%s", i, code, w.output())
		}
	}

	out, err := exec.Command(rsync, "-aHn", "--delete", "--itemize-changes", src+"/", dst+"/").CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("rsync -aHn --delete --itemize-changes finds differences (%v):\n%s", err, out)
	}
	var done, failed, entriesDone, entries, bytesDone, bytesWalked, transferred, bytesTransferred, walkErrors int64
	summary := coord.output()[strings.LastIndex(coord.output(), "krsync coordinator:"):]
	if _, err := fmt.Sscanf(summary, "krsync coordinator: %d partitions done, %d failed; %d of %d entries (%d of %d bytes) copied; %d files (%d bytes) transferred; %d walk errors",
		&done, &failed, &entriesDone, &entries, &bytesDone, &bytesWalked, &transferred, &bytesTransferred, &walkErrors); err != nil {
		t.Fatalf("summary line %q: %v", summary, err)
	}
	// The stats of a completion that never reached a killed coordinator are lost, so fewer
	// files may be counted than the tree has; more would mean copying twice.
	if maxTransferred := int64(nfiles + 3*len(workers)*filesPerPartition); transferred > maxTransferred || failed != 0 {
		t.Fatalf("summary %q: want at most %d files transferred (the tree, plus the partitions in flight at each kill), 0 failed", summary, maxTransferred)
	}
	// Every restart says it walks afresh, and never gives a partition id an earlier
	// incarnation gave: a worker's late report of an old lease cannot match a new one.
	leasedBy := map[int64]int{}
	for i, inc := range incarnations {
		if i > 0 && !strings.Contains(inc.output(), "walking the source afresh") {
			t.Errorf("coordinator %d, started on an interrupted run's journal, does not say it walks afresh", i+1)
		}
		for _, line := range strings.Split(inc.output(), "\n") {
			var ev struct {
				Message   string `json:"message"`
				Partition int64  `json:"partition"`
			}
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Partition == 0 || ev.Message != "leased" {
				continue
			}
			if k, ok := leasedBy[ev.Partition]; ok && k < i {
				t.Errorf("partition id %d leased by coordinator %d was given again by coordinator %d", ev.Partition, k+1, i+1)
			}
			if _, ok := leasedBy[ev.Partition]; !ok {
				leasedBy[ev.Partition] = i
			}
		}
	}
}
