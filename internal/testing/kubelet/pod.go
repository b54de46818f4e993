package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/krsync/krsync/internal/testing/kubelet/sandbox"
)

// maxTerminationMessage is the kubelet's limit on a termination message (bytes).
const maxTerminationMessage = 4096

// stopGrace bounds how long Stop waits for a process after SIGTERM.
const stopGrace = 5 * time.Second

// podRunner runs one Pod: volumes, init containers in order, then the containers together,
// and reports each step in the Pod's status.
type podRunner struct {
	k   *Kubelet
	pod *corev1.Pod
	dir string
	log zerolog.Logger

	termOnce sync.Once
	termCh   chan struct{} // closed when the Pod is being deleted
	grace    time.Duration // set before termCh closes
	goneOnce sync.Once
	goneCh   chan struct{} // closed when the Pod object is gone: no status to report

	statusMu sync.Mutex // serialises status patches, in order

	mu         sync.Mutex
	secrets    map[string]*corev1.Secret
	configMaps map[string]*corev1.ConfigMap
	volumes    map[string]volume
	ports      map[int32]int // container port -> loopback port, for the whole Pod
	statuses   map[string]*corev1.ContainerStatus
	initStat   map[string]*corev1.ContainerStatus
	startTime  metav1.Time
	phase      corev1.PodPhase
	message    string
	reason     string
}

func newPodRunner(k *Kubelet, pod *corev1.Pod) *podRunner {
	return &podRunner{
		k: k, pod: pod.DeepCopy(), dir: k.podDir(pod),
		log:    k.cfg.Logger.With().Str("pod", pod.Namespace+"/"+pod.Name).Logger(),
		termCh: make(chan struct{}), goneCh: make(chan struct{}),
		secrets: map[string]*corev1.Secret{}, configMaps: map[string]*corev1.ConfigMap{},
		statuses: map[string]*corev1.ContainerStatus{}, initStat: map[string]*corev1.ContainerStatus{},
		startTime: metav1.Now(), phase: corev1.PodPending,
	}
}

// terminate asks the Pod's processes to stop: SIGTERM, then SIGKILL after grace.
func (r *podRunner) terminate(grace time.Duration) {
	r.termOnce.Do(func() {
		r.grace = grace
		close(r.termCh)
	})
}

// gone says the Pod object was removed: kill at once and report nothing.
func (r *podRunner) gone() {
	r.goneOnce.Do(func() { close(r.goneCh) })
	r.terminate(0)
}

func (r *podRunner) terminating() bool {
	select {
	case <-r.termCh:
		return true
	default:
		return false
	}
}

func (r *podRunner) isGone() bool {
	select {
	case <-r.goneCh:
		return true
	default:
		return false
	}
}

// run runs the Pod to its end, reports the outcome and, once the Pod is being deleted,
// removes its object like a kubelet.
func (r *podRunner) run(ctx context.Context) {
	r.log.Debug().Msg("starting pod")
	r.finish(ctx, r.runPod(ctx))
	select {
	case <-ctx.Done():
		return
	case <-r.termCh:
	}
	if !r.isGone() {
		r.k.deletePod(ctx, r.pod)
	}
}

// runPod returns nil when every container ran (whatever its exit code), or why the Pod could
// not start.
func (r *podRunner) runPod(ctx context.Context) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	var vols map[string]volume
	err := r.retryMissing(ctx, func() (err error) {
		vols, err = r.prepareVolumes(ctx)
		return err
	})
	if err != nil {
		return err
	}
	ports, err := r.allocatePorts(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.volumes, r.ports = vols, ports
	r.mu.Unlock()
	for i := range r.pod.Spec.InitContainers {
		c := &r.pod.Spec.InitContainers[i]
		if r.terminating() || ctx.Err() != nil {
			return nil
		}
		if code := r.runContainer(ctx, c, true); code != 0 {
			return nil // the Pod fails; finish reads the init status
		}
	}
	if r.terminating() || ctx.Err() != nil {
		return nil // deleted while it started: its containers never run
	}
	var wg sync.WaitGroup
	for i := range r.pod.Spec.Containers {
		c := &r.pod.Spec.Containers[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runWithRestarts(ctx, c)
		}()
	}
	wg.Wait()
	return nil
}

// runWithRestarts applies the Pod's restartPolicy to one container.
func (r *podRunner) runWithRestarts(ctx context.Context, c *corev1.Container) {
	backoff := time.Second
	for {
		code := r.runContainer(ctx, c, false)
		if r.terminating() || ctx.Err() != nil {
			return
		}
		switch r.pod.Spec.RestartPolicy {
		case corev1.RestartPolicyNever:
			return
		case corev1.RestartPolicyOnFailure:
			if code == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.termCh:
			return
		case <-time.After(backoff): // CrashLoopBackOff, shortened
		}
		backoff = min(2*backoff, 10*time.Second)
		r.mu.Lock()
		r.statuses[c.Name].RestartCount++
		r.mu.Unlock()
	}
}

// runContainer runs one container process to its end and returns its exit code.
func (r *podRunner) runContainer(ctx context.Context, c *corev1.Container, init bool) int {
	clog := r.log.With().Str("container", c.Name).Logger()
	proc, logPath, termLog, err := r.startContainer(ctx, c)
	started := metav1.Now()
	if err != nil {
		clog.Warn().Err(err).Msg("container did not start")
		r.setContainer(c.Name, init, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 128, Reason: "StartError", Message: oneLine(err.Error()), StartedAt: started, FinishedAt: metav1.Now(),
		}}, false)
		r.patchStatus(ctx)
		return 128
	}
	r.setContainer(c.Name, init, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}, !init)
	if !init {
		r.mu.Lock()
		r.phase = corev1.PodRunning
		r.mu.Unlock()
	}
	r.patchStatus(ctx)

	exited := make(chan struct{})
	var state *os.ProcessState
	go func() {
		state, _ = proc.Process.Wait()
		close(exited)
	}()
	r.waitProcess(ctx, proc.Process, exited)
	code := exitCode(state)
	term := &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: "Completed", StartedAt: started, FinishedAt: metav1.Now(),
		ContainerID: "process://" + fmt.Sprint(proc.Process.Pid),
	}
	if code != 0 {
		term.Reason = "Error"
	}
	term.Message = terminationMessage(c, termLog, logPath, code)
	clog.Debug().Int("exit", code).Msg("container exited")
	r.setContainer(c.Name, init, corev1.ContainerState{Terminated: term}, false)
	r.patchStatus(ctx)
	return code
}

// waitProcess waits for the process, relaying a Pod deletion (SIGTERM, SIGKILL after the grace
// period) and a kubelet stop. SIGTERM goes to the main process, like a container runtime;
// SIGKILL to its whole process group, as the end of a container kills everything in it.
func (r *podRunner) waitProcess(ctx context.Context, p *os.Process, exited <-chan struct{}) {
	var grace time.Duration
	select {
	case <-exited:
		return
	case <-r.termCh:
		grace = r.grace
	case <-ctx.Done():
		grace = stopGrace
	}
	_ = p.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		<-exited
	}
}

func exitCode(state *os.ProcessState) int {
	if state == nil {
		return 128 // Wait failed: the process is not ours to reap
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}

// startContainer resolves the container's env, mounts, ports and Service names, and starts
// its process with stdout and stderr going to one log file: in the image (Config.Image) with
// the volumes mounted at their paths, or as a host process with the paths rewritten.
func (r *podRunner) startContainer(ctx context.Context, c *corev1.Container) (*exec.Cmd, string, string, error) {
	img := r.k.cfg.Image
	if img != nil {
		img = img.forContainer(c.Image)
	}
	rw := newRewriter()
	r.mu.Lock()
	vols, ports := r.volumes, r.ports
	r.mu.Unlock()
	for p, hp := range ports {
		rw.ports[p] = hp
	}
	var mounts []sandbox.Mount
	var tokenVolume, tokenMount string // a mounted ServiceAccount token volume: host and container paths
	for _, m := range c.VolumeMounts {
		vol, ok := vols[m.Name]
		if !ok {
			return nil, "", "", fmt.Errorf("volumeMount %s: no volume of that name", m.Name)
		}
		host := vol.host
		if m.SubPath != "" {
			host = filepath.Join(host, m.SubPath)
			if err := os.MkdirAll(host, 0o755); err != nil {
				return nil, "", "", fmt.Errorf("volumeMount %s subPath: %w", m.Name, err)
			}
		}
		if img != nil {
			mounts = append(mounts, sandbox.Mount{Source: host, Target: m.MountPath, ReadOnly: m.ReadOnly || vol.readOnly})
		} else {
			rw.addMount(m.MountPath, host)
		}
		if vol.serviceAccountToken {
			tokenVolume, tokenMount = vol.host, m.MountPath
		}
	}
	termLog := filepath.Join(r.dir, c.Name+".termination-log")
	if err := os.WriteFile(termLog, nil, 0o666); err != nil {
		return nil, "", "", err
	}
	if err := os.Chmod(termLog, 0o666); err != nil { // whatever the umask: any user may write it
		return nil, "", "", err
	}
	if c.TerminationMessagePath != "" {
		if img != nil {
			mounts = append(mounts, sandbox.Mount{Source: termLog, Target: c.TerminationMessagePath})
		} else {
			rw.files[c.TerminationMessagePath] = termLog
		}
	}
	if err := r.addServices(ctx, rw); err != nil {
		return nil, "", "", err
	}
	var vars []envVar
	err := r.retryMissing(ctx, func() (err error) {
		vars, err = r.containerEnv(ctx, c)
		return err
	})
	if err != nil {
		return nil, "", "", err
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.dir, "HOSTNAME=" + r.pod.Name}
	var id identity
	if img != nil {
		if id, err = containerIdentity(img, r.pod, c); err != nil {
			return nil, "", "", err
		}
		env = mergeEnv(img.Env, []string{"HOSTNAME=" + r.pod.Name, "HOME=" + id.home})
	}
	values := map[string]string{}
	hasKubeconfig := false
	var containerVars []string
	for _, v := range vars {
		values[v.name] = v.value
		containerVars = append(containerVars, v.name+"="+rw.value(v.value))
		hasKubeconfig = hasKubeconfig || v.name == EnvKubeconfig
	}
	if tokenVolume != "" && !hasKubeconfig {
		// No in-cluster configuration reaches the test API server: a kubeconfig with the
		// ServiceAccount's token stands in, beside the token in the image.
		path, inContainer := filepath.Join(r.dir, "kubeconfig"), ""
		if img != nil {
			path, inContainer = filepath.Join(tokenVolume, "kubeconfig"), filepath.Join(tokenMount, "kubeconfig")
		}
		if err := r.writeKubeconfig(ctx, path); err != nil {
			return nil, "", "", err
		}
		if inContainer == "" {
			inContainer = path
		}
		containerVars = append(containerVars, EnvKubeconfig+"="+inContainer)
	}
	env = mergeEnv(env, containerVars)
	lookup := func(name string) (string, bool) { v, ok := values[name]; return v, ok }
	var argv []string
	if img != nil {
		argv = img.commandLine(c)
	} else {
		name, args := r.k.commandLine(c)
		argv = append([]string{name}, args...)
	}
	for i, a := range argv {
		if i == 0 && img == nil && a == r.k.cfg.Binary {
			continue
		}
		argv[i] = rw.value(expand(a, lookup))
	}
	logPath := filepath.Join(r.dir, c.Name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", "", err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "# test kubelet: %s\n", strings.Join(argv, " "))
	r.k.addLog(ContainerLog{Namespace: r.pod.Namespace, Pod: r.pod.Name, Container: c.Name, Path: logPath})
	if img != nil {
		mounts = append(mounts, sandbox.Mount{Source: r.k.cfg.Binary, Target: img.BinaryPath, ReadOnly: true})
		cwd := c.WorkingDir
		if cwd == "" {
			cwd = img.WorkingDir
		}
		cmd, err := sandboxed{logFile: logFile, spec: sandbox.Spec{
			Rootfs: img.Rootfs, Dir: filepath.Join(r.dir, "containers", c.Name), Mounts: mounts,
			ReadOnlyRoot: id.readOnlyRoot, UID: id.uid, GID: id.gid, Groups: id.groups,
			Capabilities: id.capabilities, NoNewPrivs: id.noNewPrivs, Args: argv, Env: env, Cwd: cwd,
		}}.start()
		return cmd, logPath, termLog, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = r.dir
	if c.WorkingDir != "" {
		cmd.Dir = rw.value(c.WorkingDir)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, logPath, termLog, fmt.Errorf("start %s: %w", argv[0], err)
	}
	return cmd, logPath, termLog, nil
}

// missingRetry is how long a Pod waits for a Secret, ConfigMap or claim it names to appear,
// as a kubelet keeps retrying a mount (the root CA ConfigMap of a new namespace comes late).
const missingRetry = time.Minute

// retryMissing runs f until it stops failing with NotFound, the Pod is deleted, or missingRetry passes.
func (r *podRunner) retryMissing(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(missingRetry)
	for {
		err := f()
		if err == nil || !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-r.termCh:
			return err
		case <-time.After(250 * time.Millisecond): // polling for the object to appear
		}
	}
}

// commandLine turns command and args into a process: the image's ENTRYPOINT is krsync.
func (k *Kubelet) commandLine(c *corev1.Container) (string, []string) {
	args := append([]string(nil), c.Args...)
	if len(c.Command) == 0 {
		return k.cfg.Binary, args
	}
	rest := append(append([]string(nil), c.Command[1:]...), args...)
	if filepath.Base(c.Command[0]) == "krsync" {
		return k.cfg.Binary, rest
	}
	return c.Command[0], rest
}

// allocatePorts gives each container port a loopback port: the Service's port when a Service
// selects this Pod and targets that port, a fresh one otherwise.
func (r *podRunner) allocatePorts(ctx context.Context) (map[int32]int, error) {
	ports := map[int32]int{}
	var svcs []corev1.Service
	listed := false
	for _, c := range r.pod.Spec.Containers {
		for _, cp := range c.Ports {
			if !listed {
				list, err := r.k.cs.CoreV1().Services(r.pod.Namespace).List(ctx, metav1.ListOptions{})
				if err != nil {
					return nil, fmt.Errorf("list services: %w", err)
				}
				svcs, listed = list.Items, true
			}
			hp, err := r.portFor(svcs, cp)
			if err != nil {
				return nil, err
			}
			ports[cp.ContainerPort] = hp
		}
	}
	return ports, nil
}

func (r *podRunner) portFor(svcs []corev1.Service, cp corev1.ContainerPort) (int, error) {
	for _, svc := range svcs {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(r.pod.Labels)) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if targets(sp, cp) {
				return r.k.cfg.Ports.Service(svc.Namespace, svc.Name, sp.Port)
			}
		}
	}
	return r.k.cfg.Ports.Free()
}

// targets says whether a Service port leads to a container port (by number or by name).
func targets(sp corev1.ServicePort, cp corev1.ContainerPort) bool {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		return sp.TargetPort.StrVal == cp.Name
	case sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal == cp.ContainerPort
	}
	return sp.Port == cp.ContainerPort
}

// addServices routes every Service of the namespace to its loopback port, allocated lazily.
func (r *podRunner) addServices(ctx context.Context, rw *rewriter) error {
	list, err := r.k.cs.CoreV1().Services(r.pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, svc := range list.Items {
		rw.addService(svc.Namespace, svc.Name, func(port int32) (int, bool) {
			for _, sp := range svc.Spec.Ports {
				if sp.Port == port {
					hp, err := r.k.cfg.Ports.Service(svc.Namespace, svc.Name, port)
					return hp, err == nil
				}
			}
			return 0, false
		})
	}
	return nil
}

// terminationMessage reads what the container wrote to its terminationMessagePath, or the end
// of its log when it failed silently and asked for FallbackToLogsOnError.
func terminationMessage(c *corev1.Container, termLog, logPath string, code int) string {
	msg := strings.TrimSpace(tailFile(termLog, maxTerminationMessage))
	if _, err := os.Stat(termLog); err != nil {
		msg = ""
	}
	if msg == "" && code != 0 && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		msg = strings.TrimSpace(tailFile(logPath, 2048))
	}
	return msg
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func (r *podRunner) setContainer(name string, init bool, state corev1.ContainerState, ready bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.statuses
	if init {
		m = r.initStat
	}
	st, ok := m[name]
	if !ok {
		st = &corev1.ContainerStatus{Name: name}
		m[name] = st
	}
	if state.Terminated != nil {
		st.LastTerminationState = corev1.ContainerState{}
	} else if st.State.Terminated != nil {
		st.LastTerminationState = st.State
	}
	st.State, st.Ready = state, ready
	st.Started = ptrBool(state.Running != nil)
	if state.Terminated != nil {
		st.ContainerID = state.Terminated.ContainerID
	}
}

func ptrBool(b bool) *bool { return &b }

// finish sets the Pod's final phase: Failed when it could not start or a container (or an
// init container) failed, Succeeded when every container exited 0.
func (r *podRunner) finish(ctx context.Context, startErr error) {
	r.mu.Lock()
	phase := corev1.PodSucceeded
	if startErr != nil {
		phase, r.reason, r.message = corev1.PodFailed, "StartError", oneLine(startErr.Error())
	}
	for _, m := range []map[string]*corev1.ContainerStatus{r.initStat, r.statuses} {
		for _, st := range m {
			if st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 {
				phase = corev1.PodFailed
			}
		}
	}
	if len(r.statuses) < len(r.pod.Spec.Containers) {
		phase = corev1.PodFailed // an init container failed, or the kubelet stopped first
	}
	r.phase = phase
	r.mu.Unlock()
	if startErr != nil {
		r.log.Warn().Err(startErr).Msg("pod failed to start")
	}
	r.patchStatus(ctx)
}

// patchStatus sends the whole status the runner knows, unless the Pod is gone or the kubelet
// is stopping.
func (r *podRunner) patchStatus(ctx context.Context) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if ctx.Err() != nil || r.isGone() {
		return
	}
	status := r.status()
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		r.log.Error().Err(err).Msg("encode status")
		return
	}
	// A lost terminal status would hang the Job: retry what may pass on a second try.
	for attempt := 1; ; attempt++ {
		_, err = r.k.cs.CoreV1().Pods(r.pod.Namespace).Patch(ctx, r.pod.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
		if err == nil || apierrors.IsNotFound(err) || ctx.Err() != nil {
			return
		}
		if apierrors.IsInvalid(err) || attempt == 5 {
			r.log.Error().Err(err).Msg("patch pod status")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

func (r *podRunner) status() corev1.PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := metav1.Now()
	ips := []corev1.PodIP{{IP: "127.0.0.1"}}
	st := corev1.PodStatus{
		Phase: r.phase, Reason: r.reason, Message: r.message,
		HostIP: "127.0.0.1", HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}},
		PodIP: "127.0.0.1", PodIPs: ips, StartTime: &r.startTime,
	}
	allReady := len(r.statuses) == len(r.pod.Spec.Containers)
	for _, c := range r.pod.Spec.Containers {
		cs := r.containerStatus(r.statuses, c)
		allReady = allReady && cs.Ready
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	initDone := true
	for _, c := range r.pod.Spec.InitContainers {
		cs := r.containerStatus(r.initStat, c)
		initDone = initDone && cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: now}
		if ok {
			c.Status = corev1.ConditionTrue
		}
		if r.phase == corev1.PodSucceeded || r.phase == corev1.PodFailed {
			c.Reason = "PodCompleted"
		}
		return c
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodInitialized, initDone),
		cond(corev1.ContainersReady, allReady),
		cond(corev1.PodReady, allReady),
	}
	return st
}

func (r *podRunner) containerStatus(m map[string]*corev1.ContainerStatus, c corev1.Container) corev1.ContainerStatus {
	if st, ok := m[c.Name]; ok {
		out := *st
		out.Image, out.ImageID = c.Image, "process://"+r.k.cfg.Binary
		return out
	}
	reason := "PodInitializing"
	if r.phase == corev1.PodFailed {
		reason = "ContainerCreating"
	}
	return corev1.ContainerStatus{
		Name: c.Name, Image: c.Image, Started: ptrBool(false),
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
	}
}
