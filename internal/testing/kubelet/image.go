package kubelet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	corev1 "k8s.io/api/core/v1"

	"github.com/krsync/krsync/internal/testing/kubelet/sandbox"
)

// Image is a container image unpacked on the host (tools/mkimage -rootfs-dir makes krsync's).
// Every container of the kubelet runs from its root file system: there is no image pull.
// A container whose image is not one of Refs gets the root file system as a plain base image
// (a test's application, "busybox"): with root as its user and no entrypoint, as such images
// have.
type Image struct {
	// Refs are the image references that are this image (krsync:e2e); empty means every one.
	Refs []string
	// Rootfs is the image's root file system; containers never change it (see sandbox.Spec).
	Rootfs string
	// Entrypoint, Cmd, User, Env and WorkingDir are the image config's.
	Entrypoint, Cmd []string
	User            string
	Env             []string
	WorkingDir      string
	// BinaryPath is where Config.Binary is mounted, read-only, in every container: the image's
	// own krsync is replaced by the krsync under test.
	BinaryPath string
}

// sandboxInit is the container init program (sandbox/cmd/sandbox-init), built once per process.
var sandboxInit struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// initProgram builds sandbox-init with the go command, static, into a temporary directory that
// RemoveBuilt removes.
func initProgram() (string, error) {
	sandboxInit.once.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			sandboxInit.err = fmt.Errorf("find the module with `go env GOMOD`: %w", err)
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			sandboxInit.err = errors.New("build sandbox-init: not inside the krsync module")
			return
		}
		if sandboxInit.dir, sandboxInit.err = os.MkdirTemp("", "krsync-sandbox-init-"); sandboxInit.err != nil {
			return
		}
		path := filepath.Join(sandboxInit.dir, "sandbox-init")
		cmd := exec.Command("go", "build", "-o", path, "./internal/testing/kubelet/sandbox/cmd/sandbox-init")
		cmd.Dir = filepath.Dir(gomod)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			sandboxInit.err = fmt.Errorf("build sandbox-init: %w: %s", err, strings.TrimSpace(string(out)))
			return
		}
		sandboxInit.path = path
	})
	return sandboxInit.path, sandboxInit.err
}

// RemoveBuilt removes the programs the package built for this process; call it from TestMain.
func RemoveBuilt() {
	if sandboxInit.dir != "" {
		os.RemoveAll(sandboxInit.dir)
	}
}

// forContainer is the image a container with that image reference runs.
func (img *Image) forContainer(ref string) *Image {
	if len(img.Refs) == 0 {
		return img
	}
	for _, r := range img.Refs {
		if r == ref {
			return img
		}
	}
	base := *img
	base.Entrypoint, base.Cmd, base.User, base.WorkingDir = nil, nil, "", ""
	return &base
}

// commandLine is Kubernetes' rule for command and args over the image's Entrypoint and Cmd.
func (img *Image) commandLine(c *corev1.Container) []string {
	command, args := c.Command, c.Args
	if len(command) == 0 {
		command = img.Entrypoint
		if len(args) == 0 {
			args = img.Cmd
		}
	}
	return append(append([]string(nil), command...), args...)
}

// sandboxed is one container about to start in the image.
type sandboxed struct {
	spec    sandbox.Spec // spec.Dir is the container's directory on the host
	logFile *os.File
}

// start starts sandbox-init on the spec in a new mount namespace and waits until it has
// exec'd the container's command, or returns why it could not (a runtime's StartError).
func (s sandboxed) start() (*exec.Cmd, error) {
	initPath, err := initProgram()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.spec.Dir, 0o755); err != nil {
		return nil, err
	}
	specPath := filepath.Join(s.spec.Dir, "spec.json")
	if err := sandbox.WriteSpec(specPath, s.spec); err != nil {
		return nil, err
	}
	startErr, startErrW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer startErr.Close()
	cmd := exec.Command(initPath, specPath)
	cmd.Env = []string{}
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	cmd.ExtraFiles = []*os.File{startErrW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNS}
	err = cmd.Start()
	startErrW.Close()
	if err != nil {
		return nil, fmt.Errorf("start sandbox-init: %w", err)
	}
	// EOF without a word: the descriptor closed on exec, the command runs.
	msg, err := io.ReadAll(startErr)
	if err != nil || len(msg) > 0 {
		_ = cmd.Wait()
		if err == nil {
			err = errors.New(strings.TrimSpace(string(msg)))
		}
		return nil, fmt.Errorf("container init: %w", err)
	}
	return cmd, nil
}

// mergeEnv is base with every NAME=value of over set (replacing base's), in order.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	index := map[string]int{}
	for i, kv := range out {
		name, _, _ := strings.Cut(kv, "=")
		index[name] = i
	}
	for _, kv := range over {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := index[name]; ok {
			out[i] = kv
			continue
		}
		index[name] = len(out)
		out = append(out, kv)
	}
	return out
}
