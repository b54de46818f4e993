package kubeplane

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// Require skips the test, loudly, when KRSYNC_SKIP_KUBE=1. Otherwise it returns and the test
// must treat a missing or failing control plane as a failure.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvSkip) == "1" {
		t.Skip("KRSYNC_SKIP_KUBE=1: SKIPPING a Kubernetes test against the real control plane (unset it to run)")
	}
}

// Shared is one control plane for a whole test binary, started on first use and stopped by
// Main. Declare one per test package and route TestMain through it:
//
//	var cluster kubeplane.Shared
//
//	func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		plane := cluster.Require(t) // skips on KRSYNC_SKIP_KUBE=1, fails if the plane cannot start
//		...
//	}
type Shared struct {
	once  sync.Once
	dir   string
	plane *Plane
	err   error
}

// Main runs the tests and stops the plane if one was started. Its result is the exit code.
func (s *Shared) Main(m *testing.M) int {
	code := m.Run()
	if s.plane != nil {
		if err := s.plane.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubeplane: %v\n", err)
		}
		if code == 0 {
			_ = os.RemoveAll(s.dir)
		} else {
			fmt.Fprintf(os.Stderr, "kubeplane: control plane logs kept in %s/log\n", s.dir)
		}
	}
	return code
}

// Require returns the shared plane, starting it on first use. It skips the test, loudly, when
// KRSYNC_SKIP_KUBE=1, and fails it when the plane cannot start.
func (s *Shared) Require(t testing.TB) *Plane {
	t.Helper()
	Require(t)
	s.once.Do(func() {
		s.dir, s.err = os.MkdirTemp("", "krsync-kube-")
		if s.err != nil {
			return
		}
		s.plane, s.err = Start(s.dir)
	})
	if s.err != nil {
		t.Fatalf("Kubernetes control plane unavailable (set %s=1 to skip these tests explicitly): %v", EnvSkip, s.err)
	}
	return s.plane
}
