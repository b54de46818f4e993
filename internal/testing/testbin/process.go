package testbin

import (
	"bytes"
	"errors"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultProcessTimeout is how long Process.Wait waits by default: a guard against a hang,
// not a synchronisation.
const DefaultProcessTimeout = 3 * time.Minute

// Process is a child process of a test (krsync as its user runs it): its output is kept for
// failure messages and may be read while it runs, and it is killed when the test ends.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	// Stdout and Stderr hold what it wrote; the same Buffer when started combined.
	Stdout, Stderr *Buffer
	// Timeout bounds Wait; zero is DefaultProcessTimeout.
	Timeout time.Duration
	done    chan struct{}
	err     error
}

// StartProcess starts cmd (its Stdout and Stderr are set here, to one Buffer when combined).
func StartProcess(t testing.TB, name string, cmd *exec.Cmd, combined bool) *Process {
	t.Helper()
	p := &Process{Name: name, Cmd: cmd, Stdout: &Buffer{}, done: make(chan struct{})}
	p.Stderr = p.Stdout
	if !combined {
		p.Stderr = &Buffer{}
	}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.Name, err)
	}
}

// Wait returns the exit code; it fails the test when the process outlives Timeout.
func (p *Process) Wait(t testing.TB) int {
	t.Helper()
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultProcessTimeout
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still runs after %s:\n%s", p.Name, timeout, p.Output())
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		return exit.ExitCode()
	}
	t.Fatalf("%s: %v", p.Name, p.err)
	return -1
}

// Output is what the process wrote: its combined output, or stdout then stderr.
func (p *Process) Output() string {
	if p.Stderr == p.Stdout {
		return p.Stdout.String()
	}
	return "stdout:\n" + p.Stdout.String() + "\nstderr:\n" + p.Stderr.String()
}

// Buffer is a bytes.Buffer safe to read while the process writes to it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
