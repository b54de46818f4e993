package kubeplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// EnvSkip, when "1", makes Require and Shared.Require skip Kubernetes tests (loudly).
const EnvSkip = "KRSYNC_SKIP_KUBE"

// EnvScript overrides the path of control-plane.sh.
const EnvScript = "KRSYNC_KUBE_SCRIPT"

// Plane is a running control plane started by Start.
type Plane struct {
	// Dir holds the plane's state, logs (Dir/log) and kubeconfig.
	Dir string
	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	script     string
	pgid       int
}

// Script finds control-plane.sh: $KRSYNC_KUBE_SCRIPT, else ../shared/kube/control-plane.sh
// relative to the module root (`go env GOMOD`).
func Script() (string, error) {
	if s := os.Getenv(EnvScript); s != "" {
		if _, err := os.Stat(s); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvScript, s, err)
		}
		return s, nil
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root with `go env GOMOD`: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find the module root: `go env GOMOD` names no go.mod (run from inside the module)")
	}
	s := filepath.Join(filepath.Dir(gomod), "..", "shared", "kube", "control-plane.sh")
	if _, err := os.Stat(s); err != nil {
		return "", fmt.Errorf("control plane script: %w (set %s)", err, EnvScript)
	}
	return s, nil
}

// Start runs `control-plane.sh start dir` and returns the running plane. dir must exist or be
// creatable; the first start may build the binaries (about 10 minutes, cached afterwards).
func Start(dir string) (*Plane, error) {
	p, err := startOnce(dir)
	if errors.Is(err, errDaemonExited) {
		// A loaded machine can make kube-controller-manager give up while the API server
		// warms up; one more start usually settles it.
		p, err = startOnce(dir)
	}
	return p, err
}

// errDaemonExited marks a control plane whose API server, controller manager or scheduler
// died at start.
var errDaemonExited = errors.New("control plane daemon exited")

func startOnce(dir string) (*Plane, error) {
	script, err := Script()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("control plane dir: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("control plane dir: %w", err)
	}
	// A file, not a pipe: daemons the script leaves running may inherit its output, and a
	// pipe would keep Wait waiting for them.
	out, err := os.Create(filepath.Join(dir, "start.log"))
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	defer out.Close()
	cmd := exec.Command("bash", script, "start", dir)
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own: the daemons the script starts in the background stay in it,
	// so Stop can kill exactly them even if the script's stop misses one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("control plane: start %s: %w", script, err)
	}
	p := &Plane{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), script: script, pgid: cmd.Process.Pid}
	if err := cmd.Wait(); err != nil {
		_ = p.Stop()
		log, _ := os.ReadFile(out.Name())
		return nil, fmt.Errorf("control plane: %s start: %w: %s", script, err, lastLines(string(log), 5))
	}
	if err := p.waitReady(2 * time.Minute); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("control plane: %w (logs in %s/log)", err, dir)
	}
	return p, nil
}

// daemonsAlive checks the controller manager and the scheduler still run: on a loaded machine
// kube-controller-manager gives up when the API server is slow to become healthy, and without
// it no Job, ServiceAccount or node taint ever moves.
func (p *Plane) daemonsAlive() error {
	// The API server too: when another plane on the machine took its port between the
	// script's choice and its bind, it exits, and the kubeconfig points at a stranger
	// (x509: unknown authority); a new start picks new ports.
	for _, d := range []struct{ pidFile, log string }{
		{"apiserver.pid", "apiserver.log"}, {"kcm.pid", "kcm.log"}, {"scheduler.pid", "scheduler.log"},
	} {
		b, err := os.ReadFile(filepath.Join(p.Dir, d.pidFile))
		if err != nil {
			return fmt.Errorf("%s: %w", d.pidFile, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("%s: %w", d.pidFile, err)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			log, _ := os.ReadFile(filepath.Join(p.Dir, "log", d.log))
			return fmt.Errorf("%w: %s (pid %d): %s", errDaemonExited, strings.TrimSuffix(d.log, ".log"), pid, lastLines(string(log), 2))
		}
	}
	return nil
}

// waitReady polls until the API server answers /readyz and the default ServiceAccount exists.
func (p *Plane) waitReady(timeout time.Duration) error {
	cfg, err := p.RESTConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, last = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if last == nil {
			// The default ServiceAccount is made by kube-controller-manager: it proves it runs.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, last = cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
			cancel()
		}
		if last == nil {
			last = p.daemonsAlive()
			if last == nil {
				return nil
			}
			return last
		}
		if err := p.daemonsAlive(); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond) // polling a condition, not synchronising
	}
	return fmt.Errorf("control plane not ready after %s: %w", timeout, last)
}

// RESTConfig returns an admin client configuration for the plane.
func (p *Plane) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", p.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", p.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, nil
}

// Clientset returns an admin clientset for the plane.
func (p *Plane) Clientset() (*kubernetes.Clientset, error) {
	cfg, err := p.RESTConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return cs, nil
}

// Stop stops the daemons: `control-plane.sh stop`, then SIGKILL to the process group Start
// created, in case one survived.
func (p *Plane) Stop() error {
	var out bytes.Buffer
	cmd := exec.Command("bash", p.script, "stop", p.Dir)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if p.pgid > 0 {
		_ = syscall.Kill(-p.pgid, syscall.SIGKILL) // our own group only; ESRCH when all are gone
	}
	if err != nil {
		return fmt.Errorf("control plane: stop: %w: %s", err, lastLines(out.String(), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
