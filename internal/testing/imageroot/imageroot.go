// Package imageroot gives tests krsync's runtime image as a root file system on this machine,
// for the test kubelet (kubelet.Config.Image): the first layer tools/mkimage puts in the image
// archive, unpacked, with the image config. tools/mkimage -rootfs-dir makes it once per machine
// (about 40 s and Debian's mirror; `make image-rootfs`, which `make test` runs first) and
// reuses it from the cache afterwards; this package asks it for the path.
//
// With KRSYNC_IMAGE_ARCHIVE naming an archive `make image` wrote (relative to the module's
// root: bin/krsync-image.oci.tar), the tests run that very image instead: its layers unpacked
// (once per image digest) and its config.
package imageroot

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/krsync/krsync/internal/testing/kubelet"
	"github.com/krsync/krsync/internal/testing/testbin"
)

// unpacked mirrors tools/mkimage's image.json (mkimage is a program: its type cannot be imported).
type unpacked struct {
	Rootfs          string
	Entrypoint, Cmd []string
	User            string
	Env             []string
	WorkingDir      string
	BinaryPath      string
}

// EnvArchive names an image archive to run instead of the cached root file system.
const EnvArchive = "KRSYNC_IMAGE_ARCHIVE"

var cached struct {
	once  sync.Once
	image *kubelet.Image
	err   error
}

// Image returns the image, made if the cache lacks it. It skips the test when the image
// cannot be had (no root, no mmdebstrap, no mirror), and fails it under CI=true.
func Image(t testing.TB) *kubelet.Image {
	t.Helper()
	cached.once.Do(func() { cached.image, cached.err = load() })
	if cached.err != nil {
		testbin.SkipOrFail(t, "SKIPPING: the image's root file system is not available here (`make image-rootfs` makes it): "+cached.err.Error())
	}
	img := *cached.image
	return &img
}

// CacheDir is where tools/mkimage keeps root file systems: $XDG_CACHE_HOME/krsync-image or
// ~/.cache/krsync-image, as the Makefile says.
func CacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "krsync-image"), nil
}

func load() (*kubelet.Image, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("needs root (its files have the image's owners; containers need mounts)")
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	module := filepath.Dir(strings.TrimSpace(string(out)))
	args := []string{"run", "./tools/mkimage", "-rootfs-dir", cache}
	if archive := os.Getenv(EnvArchive); archive != "" {
		args = append(args, "-from-archive", archive) // relative to the module's root, as make writes it
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = module
	var stderr strings.Builder
	cmd.Stderr = &stderr
	manifest, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, lastLines(stderr.String(), 5))
	}
	b, err := os.ReadFile(strings.TrimSpace(string(manifest)))
	if err != nil {
		return nil, err
	}
	var u unpacked
	if err := json.Unmarshal(b, &u); err != nil {
		return nil, fmt.Errorf("image.json: %w", err)
	}
	return &kubelet.Image{Rootfs: u.Rootfs, Entrypoint: u.Entrypoint, Cmd: u.Cmd, User: u.User, Env: u.Env, WorkingDir: u.WorkingDir, BinaryPath: u.BinaryPath}, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
