// Package e2e runs the real krsync binary as a new user would: built once per test binary,
// started as child processes on generated hostile trees, with the real rsync, and judged by
// internal/testing/treecmp and by rsync itself. The helpers every e2e test shares live in
// helpers_test.go.
package e2e

import (
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
)

// TestMain gives the binary a temporary home and removes it after the tests; the test
// wrapper exits with m.Run's code when TestMain returns.
func TestMain(m *testing.M) {
	m.Run()
	testbin.RemoveKrsync()
}
