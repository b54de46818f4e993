package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Version is the version stamped into the krsync that Krsync builds (`krsync version` says it).
const Version = "test"

// built is the krsync binary, built at most once per test binary: building takes tens of
// seconds on 2 cores.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Krsync returns the krsync binary of the module that contains the working directory, built
// once per test binary the way the Dockerfile builds it (static, trimmed paths), in a
// directory readable and executable by everyone, so tests can run it as an unprivileged user.
// A failed build fails the test. RemoveKrsync removes it (from TestMain).
func Krsync(t testing.TB) string {
	t.Helper()
	built.once.Do(func() { built.path, built.err = buildKrsync() })
	if built.err != nil {
		t.Fatalf("build krsync: %v", built.err)
	}
	return built.path
}

// RemoveKrsync removes the binary Krsync built, if any; call it from TestMain after m.Run.
func RemoveKrsync() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

func buildKrsync() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module with `go env GOMOD`: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the krsync module")
	}
	if built.dir, err = os.MkdirTemp("", "krsync-test-bin-"); err != nil {
		return "", err
	}
	if err := os.Chmod(built.dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(built.dir, "krsync")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+Version, "-o", bin, ".")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}
