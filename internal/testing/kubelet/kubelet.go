package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Config configures one kubelet (one Node).
type Config struct {
	// RESTConfig reaches the API server with rights to manage Nodes, Leases and Pods and to
	// request ServiceAccount tokens (the control plane's admin is fine).
	RESTConfig *rest.Config
	// NodeName names the Node; Nodes are cluster-wide, so make it unique per test.
	NodeName string
	// Binary is the krsync binary. Without Image, a container whose command is empty (the
	// image's ENTRYPOINT) or names krsync runs it as a host process, and other commands run as
	// written, found on the host's PATH. With Image, it is mounted at Image.BinaryPath.
	Binary string
	// Image, when set, runs every container in that image's root file system with its Pod's
	// securityContext (user, groups, capabilities, no_new_privs, read-only root) and its
	// volumes mounted at their mountPaths, as a container runtime would; needs root.
	Image *Image
	// Labels are added to the Node's standard labels (kubernetes.io/hostname and so on).
	Labels map[string]string
	// Capacity overrides the Node's capacity and allocatable (default 32 CPUs, 64Gi, 110 pods).
	Capacity corev1.ResourceList
	// Ports is shared by the kubelets of one cluster so Services resolve across Nodes;
	// nil gives this kubelet a registry of its own.
	Ports *Ports
	// Dir holds volumes, tokens, kubeconfigs and logs; empty means a new temporary directory.
	Dir string
	// Logger receives the kubelet's own log lines.
	Logger zerolog.Logger
}

// Kubelet runs the Pods bound to one Node as local processes.
type Kubelet struct {
	cfg     Config
	cs      kubernetes.Interface
	nodeUID types.UID
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	pods    map[types.UID]*podRunner
	logs    []ContainerLog
	stopped bool
}

// ContainerLog locates the captured stdout and stderr of one container run.
type ContainerLog struct {
	Namespace, Pod, Container string
	// Path is the file holding the process's stdout and stderr, interleaved.
	Path string
}

// Run starts a kubelet and runs it until ctx is done, then stops it (see Stop).
func Run(ctx context.Context, cfg Config) error {
	k, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return k.Stop()
}

// Start registers the Node, waits until it is schedulable and starts running the Pods bound
// to it. It returns once the Node can take Pods; the kubelet runs until ctx is done or Stop.
func Start(ctx context.Context, cfg Config) (*Kubelet, error) {
	if cfg.RESTConfig == nil || cfg.NodeName == "" || cfg.Binary == "" {
		return nil, errors.New("kubelet: RESTConfig, NodeName and Binary are required")
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("kubelet: binary: %w", err)
	}
	if cfg.Image != nil {
		if os.Geteuid() != 0 {
			return nil, errors.New("kubelet: running containers in an image needs root (mounts, namespaces, capabilities)")
		}
		if _, err := initProgram(); err != nil {
			return nil, fmt.Errorf("kubelet: %w", err)
		}
	}
	if cfg.Ports == nil {
		cfg.Ports = NewPorts()
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "krsync-kubelet-")
		if err != nil {
			return nil, fmt.Errorf("kubelet: %w", err)
		}
		cfg.Dir = dir
	}
	cfg.Logger = cfg.Logger.With().Str("node", cfg.NodeName).Logger()
	cs, err := kubernetes.NewForConfig(cfg.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("kubelet: client: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	k := &Kubelet{cfg: cfg, cs: cs, cancel: cancel, pods: map[types.UID]*podRunner{}}
	if err := k.registerNode(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("kubelet: %w", err)
	}
	k.wg.Add(1)
	go k.heartbeatLoop(ctx)
	if err := k.waitSchedulable(ctx, time.Minute); err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("kubelet: %w", err)
	}
	if err := k.watchPods(ctx); err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("kubelet: %w", err)
	}
	return k, nil
}

// NodeName is the name of the kubelet's Node.
func (k *Kubelet) NodeName() string { return k.cfg.NodeName }

// Stop kills every process it runs (SIGTERM, then SIGKILL after at most 5 s), stops watching,
// and deletes its Node so the scheduler stops binding Pods to it. Pod statuses are left as
// they were. It is safe to call more than once.
func (k *Kubelet) Stop() error {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return nil
	}
	k.stopped = true
	k.mu.Unlock()
	k.cancel()
	k.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := k.cs.CoreV1().Nodes().Delete(ctx, k.cfg.NodeName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubelet: delete node %s: %w", k.cfg.NodeName, err)
	}
	return nil
}

func (k *Kubelet) heartbeatLoop(ctx context.Context) {
	defer k.wg.Done()
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := k.heartbeat(ctx); err != nil && ctx.Err() == nil {
				k.cfg.Logger.Warn().Err(err).Msg("heartbeat")
			}
		}
	}
}

// watchPods runs an informer on the Pods bound to this Node and dispatches their events.
func (k *Kubelet) watchPods(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(k.cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podChanged(ctx, obj) },
		UpdateFunc: func(_, obj any) { k.podChanged(ctx, obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				k.podGone(pod.UID)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		inf.Run(ctx.Done())
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("watch pods: cache never synced")
	}
	return nil
}

// podChanged starts a runner for a new Pod and tells a running one that its Pod is being deleted.
func (k *Kubelet) podChanged(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	r, running := k.pods[pod.UID]
	if !running {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return // finished before this kubelet saw it
		}
		if pod.DeletionTimestamp != nil {
			// Never started: nothing to kill, just let the deletion finish.
			k.wg.Add(1)
			go func() {
				defer k.wg.Done()
				k.deletePod(ctx, pod)
			}()
			return
		}
		r = newPodRunner(k, pod)
		k.pods[pod.UID] = r
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			r.run(ctx)
		}()
	}
	if pod.DeletionTimestamp != nil {
		grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		}
		r.terminate(time.Duration(grace) * time.Second)
	}
}

// podGone kills the processes of a Pod whose object disappeared (a forced deletion).
func (k *Kubelet) podGone(uid types.UID) {
	k.mu.Lock()
	r := k.pods[uid]
	k.mu.Unlock()
	if r != nil {
		r.gone()
	}
}

// deletePod removes the Pod object once its processes are gone, like a kubelet (grace 0).
func (k *Kubelet) deletePod(ctx context.Context, pod *corev1.Pod) {
	uid := pod.UID
	err := k.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
		k.cfg.Logger.Warn().Err(err).Str("pod", pod.Namespace+"/"+pod.Name).Msg("delete pod")
	}
}

func (k *Kubelet) addLog(l ContainerLog) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.logs = append(k.logs, l)
}

// Logs lists the captured output of every container this kubelet started, in start order.
func (k *Kubelet) Logs() []ContainerLog {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]ContainerLog(nil), k.logs...)
}

// DumpLogs writes the last maxBytes of every container's output to w, for test diagnostics.
func (k *Kubelet) DumpLogs(w io.Writer, maxBytes int64) {
	logs := k.Logs()
	sort.SliceStable(logs, func(i, j int) bool { return logs[i].Pod < logs[j].Pod })
	for _, l := range logs {
		fmt.Fprintf(w, "===== node %s pod %s/%s container %s (%s)\n", k.cfg.NodeName, l.Namespace, l.Pod, l.Container, l.Path)
		fmt.Fprintln(w, tailFile(l.Path, maxBytes))
	}
}

// tailFile returns the last maxBytes of a file, or a note saying why it cannot.
func tailFile(path string, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := int64(0)
	if maxBytes > 0 && st.Size() > maxBytes {
		off = st.Size() - maxBytes
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// podDir is where one Pod's volumes, token and logs live.
func (k *Kubelet) podDir(pod *corev1.Pod) string {
	return filepath.Join(k.cfg.Dir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)[:8])
}
