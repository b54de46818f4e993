package kubelet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildKrsync builds the krsync binary of the module that contains the working directory into
// dir, the way the Dockerfile does (static, trimmed paths), and returns its path.
func BuildKrsync(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build krsync: find the module with `go env GOMOD`: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("build krsync: not inside the krsync module")
	}
	bin := filepath.Join(dir, "krsync")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=kubelet-test", "-o", bin, ".")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build krsync: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}
