package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// faultScene is one row of the fault matrix: a source, the state directory every run of the
// row shares, and how a run is started (as root, or as nobody for the permission faults).
type faultScene struct {
	w        localWorld
	stateDir string
	rsync    string
	opts     runOptions
	// distributed runs `krsync coordinator` and two `krsync worker` processes instead of
	// `krsync local`.
	distributed bool
}

// distributedRun is one coordinator process of a distributed scene and how to reach it.
type distributedRun struct {
	coordinator          *process
	url, tokenFile, dest string
}

// startCoordinator starts `krsync coordinator` of the scene into dest.
func (s faultScene) startCoordinator(t *testing.T, dest string) distributedRun {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(faultToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	p := startProcess(t, "coordinator", buildKrsync(t), "--log-format=json", "coordinator",
		"--source", s.w.src, "--dest", dest, "--listen", addr, "--fpart-opts=-f 25 -zz",
		"--lease-ttl=2s", "--linger=3s", "--token-file", tokenFile, "--state-dir", s.stateDir)
	return distributedRun{coordinator: p, url: "http://" + addr, tokenFile: tokenFile, dest: dest}
}

// startWorker starts one `krsync worker` of a distributed run with rsync as its rsync.
func (d distributedRun) startWorker(t *testing.T, s faultScene, name, rsync string) *process {
	t.Helper()
	return startProcess(t, name, buildKrsync(t), "--log-format=json", "worker", "--coordinator", d.url,
		"--source", s.w.src, "--dest", d.dest, "--token-file", d.tokenFile, "--name", name, "--rsync", rsync)
}

// wait returns the coordinator's exit code once it and the workers have exited; a worker
// must exit 0 whenever the coordinator does.
func (d distributedRun) wait(t *testing.T, workers ...*process) krsyncRun {
	t.Helper()
	code := d.coordinator.Wait(t)
	for _, w := range workers {
		if wc := w.Wait(t); wc != 0 && code == 0 {
			t.Errorf("%s exited %d although the coordinator exited 0:\n%s", w.Name, wc, w.Output())
		}
	}
	return krsyncRun{code: code, stderr: d.coordinator.Output()}
}

// args are the arguments of a plain `krsync local` run of the scene into dest.
func (s faultScene) args(dest string, extra ...string) []string {
	return append([]string{"--log-format=json", "local", "--source", s.w.src, "--dest", dest,
		"--workers", "3", "--fpart-opts=-f 25 -zz", "--state-dir", s.stateDir}, extra...)
}

// run runs krsync local (or a coordinator and two workers) into dest and returns how it
// ended.
func (s faultScene) run(t *testing.T, dest string, extra ...string) krsyncRun {
	t.Helper()
	if s.distributed {
		d := s.startCoordinator(t, dest)
		return d.wait(t, d.startWorker(t, s, "worker-1", s.rsync), d.startWorker(t, s, "worker-2", s.rsync))
	}
	opts := s.opts
	opts.env = append(append([]string(nil), opts.env...), s.w.env()...)
	return runKrsync(t, opts, s.args(dest, extra...)...)
}

// killMidRun starts a run into dest whose rsyncs block after the first few, SIGKILLs it while
// a worker is provably in the middle of a partition, and returns once it is gone.
func (s faultScene) killMidRun(t *testing.T, dest string) {
	t.Helper()
	gate := testbin.NewGatedRsync(t, s.rsync, 2)
	p := startProcessEnv(t, "krsync local", s.w.env(), buildKrsync(t), s.args(dest, "--rsync", gate.Wrapper)...)
	waitUntilFor(t, p, "a worker blocked in the middle of a partition", func() bool { return gate.Blocked() > 0 })
	p.Signal(t, syscall.SIGKILL)
	p.Wait(t)
	if _, err := os.Stat(filepath.Join(s.stateDir, "journal.db")); err != nil {
		t.Fatalf("the killed run left no journal: %v", err)
	}
}

// TestFaultMatrix hurts a run in one way per row and checks the two promises every fault
// must keep: the first run's exit code is the documented one (README "Guarantees"), and one
// plain rerun of the same command ends in exit 0 with a destination equal to the source.
// Then a run of the same command into a different destination, with the same state
// directory, must also end equal: no state of the earlier runs may stand in for a copy.
func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	rsync := testbin.Rsync(t)
	randomTree := func(t *testing.T, dir string) {
		if _, err := treegen.Random(dir, treegen.RandomSpec{Seed: 9090, Entries: 250}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		// distributed: coordinator and worker processes instead of krsync local.
		distributed bool
		// root: the row needs root (to mount, or to make files nobody can read).
		root bool
		// unprivileged: every run of the row runs as nobody; owners cannot be kept then.
		unprivileged bool
		tree         func(t *testing.T, dir string)
		// first runs the faulty first run and returns its exit code.
		first func(t *testing.T, s faultScene) int
		want  []int // allowed exit codes of the first run
		// changesSource: the fault is a change of the source itself.
		changesSource bool
		// fix undoes the fault's cause, as the user would before the rerun.
		fix func(t *testing.T, s faultScene)
	}{
		{
			name: "krsync killed (SIGKILL) in the middle of a partition",
			tree: randomTree,
			first: func(t *testing.T, s faultScene) int {
				s.killMidRun(t, s.w.dest)
				return -1
			},
			want: []int{-1},
		},
		{
			name:        "a worker process killed (SIGKILL) in the middle of a partition",
			distributed: true,
			tree:        randomTree,
			first: func(t *testing.T, s faultScene) int {
				d := s.startCoordinator(t, s.w.dest)
				gate := newRsyncGate(t, s.rsync)
				victim := d.startWorker(t, s, "victim", gate.wrapper)
				gate.waitStarted(t, victim)
				victim.Signal(t, syscall.SIGKILL)
				victim.Wait(t)
				// The victim's lease expires after --lease-ttl and goes to the successor.
				return d.wait(t, d.startWorker(t, s, "successor", s.rsync)).code
			},
			want: []int{0},
		},
		{
			name: "rsync killed (SIGKILL) in the middle of a file",
			tree: randomTree,
			first: func(t *testing.T, s faultScene) int {
				// The second and third rsync are SIGKILLed while they run, and then the
				// wrapper dies by SIGKILL too, as an OOM kill would end them: their
				// partitions are retried (at most two kills, three attempts each) and the
				// run completes.
				wrapper := filepath.Join(t.TempDir(), "rsync-killed")
				script := fmt.Sprintf(`#!/bin/sh
mktemp -p '%[1]s' >/dev/null
n=$(ls '%[1]s' | wc -l)
if [ "$n" -eq 2 ] || [ "$n" -eq 3 ]; then
  '%[2]s' "$@" <&0 & pid=$!
  sleep 0.1
  kill -9 $pid
  wait $pid
  kill -9 $$
fi
exec '%[2]s' "$@"
`, t.TempDir(), s.rsync)
				if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
				return s.run(t, s.w.dest, "--rsync", wrapper).code
			},
			want: []int{0},
		},
		{
			name: "destination full (ENOSPC on a small tmpfs)",
			root: true,
			tree: func(t *testing.T, dir string) {
				randomTree(t, dir)
				writeFile(t, filepath.Join(dir, "big"), strings.Repeat("0123456789abcdef", 512<<10), 0o644) // 8 MiB
			},
			first: func(t *testing.T, s faultScene) int {
				mkdir(t, s.w.dest)
				if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "krsync-matrix", s.w.dest).CombinedOutput(); err != nil {
					t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
				}
				t.Cleanup(func() { _ = exec.Command("umount", s.w.dest).Run() })
				return s.run(t, s.w.dest).code
			},
			want: []int{1},
			fix: func(t *testing.T, s faultScene) {
				if out, err := exec.Command("mount", "-o", "remount,size=64m", s.w.dest).CombinedOutput(); err != nil {
					t.Fatalf("remount bigger: %v: %s", err, out)
				}
			},
		},
		{
			name:         "unreadable file and directory",
			root:         true,
			unprivileged: true,
			tree: func(t *testing.T, dir string) {
				plainTree(t, dir, 9091, 150)
				writeFile(t, filepath.Join(dir, "#secret"), "top secret", 0o600)
				writeFile(t, filepath.Join(dir, "d00", "secret-dir", "inner"), "inner", 0o644)
				chmod(t, filepath.Join(dir, "d00", "secret-dir"), 0o700)
			},
			first: func(t *testing.T, s faultScene) int { return s.run(t, s.w.dest).code },
			want:  []int{1},
			fix: func(t *testing.T, s faultScene) {
				chmod(t, filepath.Join(s.w.src, "#secret"), 0o644)
				chmod(t, filepath.Join(s.w.src, "d00", "secret-dir"), 0o755)
			},
		},
		{
			name: "entries vanish after the walk listed them",
			tree: randomTree,
			first: func(t *testing.T, s faultScene) int {
				// The first rsync removes a top-level directory and a few files before any
				// rsync copies them; the others wait until it has.
				once := filepath.Join(t.TempDir(), "once")
				wrapper := filepath.Join(t.TempDir(), "rsync-vanishing")
				script := fmt.Sprintf(`#!/bin/sh
if mkdir '%[1]s' 2>/dev/null; then
  rm -rf '%[2]s/#dir' '%[2]s/#top' '%[2]s/--delete'
  touch '%[1]s/done'
fi
while [ ! -e '%[1]s/done' ]; do sleep 0.05; done
exec '%[3]s' "$@"
`, once, s.w.src, s.rsync)
				if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
				return s.run(t, s.w.dest, "--rsync", wrapper).code
			},
			want:          []int{0},
			changesSource: true,
		},
		{
			name: "corrupt journal",
			tree: randomTree,
			first: func(t *testing.T, s faultScene) int {
				s.killMidRun(t, s.w.dest)
				journal := filepath.Join(s.stateDir, "journal.db")
				fi, err := os.Stat(journal)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(journal, fi.Size()/2); err != nil {
					t.Fatal(err)
				}
				run := s.run(t, s.w.dest)
				if strings.Contains(run.stderr, "panic") || strings.Contains(run.stderr, "goroutine ") {
					t.Errorf("a corrupt journal made krsync panic:\n%s", truncateLines(run.stderr, 30))
				}
				return run.code
			},
			want: []int{0},
		},
		{
			name: "journal of a run to another destination",
			tree: randomTree,
			first: func(t *testing.T, s faultScene) int {
				s.killMidRun(t, filepath.Join(s.w.out, "elsewhere"))
				run := s.run(t, s.w.dest)
				if last := finalLine(run.stderr); !strings.Contains(last, "--state-dir") || !strings.Contains(last, "journal.db") {
					t.Errorf("the refusal does not name --state-dir and the journal to remove: %q", last)
				}
				return run.code
			},
			want: []int{2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.root && os.Geteuid() != 0 {
				t.Skip("needs root")
			}
			w := newLocalWorld(t)
			s := faultScene{w: w, stateDir: filepath.Join(w.world, "state"), rsync: rsync, distributed: tt.distributed}
			mkdir(t, s.stateDir)
			tt.tree(t, s.w.src)
			if tt.unprivileged {
				s.opts.attr = unprivileged()
				mkdir(t, s.w.dest)
				for _, dir := range []string{s.w.dest, s.w.stateHome, s.stateDir, s.w.out} {
					if err := os.Chown(dir, 65534, 65534); err != nil {
						t.Fatal(err)
					}
				}
			}
			source := snapshotTree(t, s.w.src)
			code := tt.first(t, s)
			if !containsInt(tt.want, code) {
				t.Fatalf("the faulty run exited %d, want one of %v", code, tt.want)
			}
			if code == 2 {
				// A refusal names what to remove; the user removes it.
				if err := os.Remove(filepath.Join(s.stateDir, "journal.db")); err != nil {
					t.Fatal(err)
				}
			}
			if tt.fix != nil {
				tt.fix(t, s)
			}
			for _, dest := range []string{s.w.dest, filepath.Join(s.w.out, "second")} {
				run := s.run(t, dest)
				if run.code != 0 {
					t.Fatalf("plain rerun into %s exited %d:\n%s", dest, run.code, truncateLines(run.stderr, 40))
				}
				s.requireEqual(t, tt.unprivileged, dest)
			}
			if tt.fix == nil && !tt.changesSource {
				requireUnchanged(t, source, "the source")
			}
		})
	}
}

// requireEqual compares the source with dest; unprivileged runs cannot keep owners.
func (s faultScene) requireEqual(t *testing.T, unprivileged bool, dest string) {
	t.Helper()
	if !unprivileged {
		compareTrees(t, s.w.src, dest)
		return
	}
	diffs, err := treecmp.Compare(s.w.src, dest, treecmp.Options{SymlinkTimes: true})
	if err != nil {
		t.Fatal(err)
	}
	if rest := diffsExcept(diffs, []treecmp.Kind{treecmp.UID, treecmp.GID}); len(rest) > 0 {
		t.Errorf("%d differences between the source and %s:\n%s", len(rest), dest, treecmp.Format(rest, 30))
	}
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
