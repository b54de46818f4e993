// Package testbin is for tests only: it builds krsync once per test binary (Krsync) and finds
// the real programs the tests run (rsync, fpart, fpsync), with one skip policy everywhere. A missing program skips the test with the
// reason, but fails it when CI=true, so a green CI run never hides an untested path.
package testbin

import (
	"os"
	"os/exec"
	"testing"
)

// Program returns the path of name on PATH, or skips (fails under CI=true) the test.
func Program(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, name+" not found on PATH (apt-get install "+debianPackage(name)+"): "+err.Error())
	}
	return path
}

// SkipOrFail skips the test with reason, or fails it when CI=true.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true forbids skipping: %s", reason)
	}
	t.Skip(reason)
}

// debianPackage names the Debian package that ships a program the tests use.
func debianPackage(program string) string {
	if program == "fpsync" {
		return "fpart"
	}
	return program
}

// Rsync returns the real rsync, or skips (fails under CI=true) the test.
func Rsync(t testing.TB) string {
	t.Helper()
	return Program(t, "rsync")
}

// Fpart returns the real fpart, or skips (fails under CI=true) the test.
func Fpart(t testing.TB) string {
	t.Helper()
	return Program(t, "fpart")
}
