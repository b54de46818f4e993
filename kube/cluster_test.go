package kube_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// fakeCoordinator stands in for coordinator.Coordinator: a status the test sets, and a
// record of the workers released.
type fakeCoordinator struct {
	mu       sync.Mutex
	status   leaseapi.Status
	released []string
}

func (f *fakeCoordinator) ReleaseWorker(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, name)
	return 1
}

func (f *fakeCoordinator) Status() leaseapi.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeCoordinator) setWork(pending, leased int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.Partitions.Pending, f.status.Partitions.Leased = pending, leased
	f.status.Partitions.Total = pending + leased + f.status.Partitions.Done
}

func (f *fakeCoordinator) wasReleased(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.released, name)
}

// testEnv is one namespace on the shared control plane with claims, the worker template and
// a Pod standing in for the coordinator's.
type testEnv struct {
	t        *testing.T
	cfg      *rest.Config
	cs       kubernetes.Interface
	ns       string
	template string
	self     *corev1.Pod
}

type envOptions struct {
	sourceModes, destModes []corev1.PersistentVolumeAccessMode
	node                   string // the coordinator Pod's node, "" for none
	// selfSpec, when set, is the coordinator Pod's spec (e.g. a rendered Job's Pod template);
	// its node is o.node.
	selfSpec *corev1.PodSpec
	// workerTemplate is the worker Job template (YAML); empty: the default manifests'.
	workerTemplate string
	// selfLabels are the coordinator Pod's labels (a Job's Pod has job-name and the run's).
	selfLabels map[string]string
}

func newEnv(t *testing.T, o envOptions) *testEnv {
	t.Helper()
	plane := cluster.Require(t)
	cfg, err := plane.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, cfg: cfg, cs: cs, ns: kubeplane.Namespace(t, cs)}
	rwx := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	e.claim("source-pvc", orDefault(o.sourceModes, rwx))
	e.claim("dest-pvc", orDefault(o.destModes, rwx))

	tmpl := o.workerTemplate
	if tmpl == "" {
		tmpl = defaultManifests(t).WorkerTemplate.Data[kube.WorkerTemplateKey]
	}
	e.template = filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(e.template, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	self := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "krsync-coordinator-" + kubeplane.UniqueName("")[2:], Labels: o.selfLabels},
		Spec: corev1.PodSpec{
			NodeName:   o.node,
			Containers: []corev1.Container{{Name: "coordinator", Image: "registry.test/krsync:v9", ImagePullPolicy: corev1.PullNever}},
			Volumes: []corev1.Volume{
				{Name: "source", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "source-pvc", ReadOnly: true}}},
				{Name: "dest", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "dest-pvc"}}},
			},
		},
	}
	if o.selfSpec != nil {
		self.Spec = *o.selfSpec.DeepCopy()
		self.Spec.NodeName = o.node
	}
	if e.self, err = cs.CoreV1().Pods(e.ns).Create(context.Background(), self, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func orDefault[T any](v, def []T) []T {
	if len(v) == 0 {
		return def
	}
	return v
}

// claim creates a PersistentVolumeClaim bound to a hostPath PersistentVolume of its own, so
// that the scheduler can place Pods that use it.
func (e *testEnv) claim(name string, modes []corev1.PersistentVolumeAccessMode) {
	e.t.Helper()
	ctx := context.Background()
	size := resource.MustParse("1Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   modes,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: e.t.TempDir()}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: e.ns, Name: name},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		},
	}
	if _, err := e.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.cs.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	empty := ""
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      modes,
			StorageClassName: &empty,
			VolumeName:       pv.Name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if _, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	// Pods with an unbound claim are unschedulable and then retried with a backoff: wait.
	e.eventually("claim "+name+" is bound", func() bool {
		got, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.ClaimBound
	})
}

func (e *testEnv) options(parallelism int) kube.Options {
	return kube.Options{
		CreateWorkers: true, WorkerTemplate: e.template, Parallelism: parallelism,
		PodName: e.self.Name, PodNamespace: e.ns, NodeName: e.self.Spec.NodeName,
	}
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
}

// runDriver runs a driver on cs until the test ends. The channel is closed when Run has
// returned; *result then holds its error.
func (e *testEnv) runDriver(cs kubernetes.Interface, opts kube.Options, c kube.Coordinator) (*kube.Driver, <-chan struct{}, *error) {
	e.t.Helper()
	d, err := kube.NewDriver(context.Background(), cs, "default", opts, testLogger(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var result error
	go func() {
		defer close(done)
		result = d.Run(ctx, c)
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
	})
	return d, done, &result
}

// job waits for the worker Job to exist and returns it.
func (e *testEnv) job() *batchv1.Job {
	e.t.Helper()
	var job *batchv1.Job
	e.eventually("the worker Job exists", func() bool {
		var err error
		job, err = e.cs.BatchV1().Jobs(e.ns).Get(context.Background(), kube.WorkerJobName, metav1.GetOptions{})
		return err == nil
	})
	return job
}

// workerPods lists the Pods the Job controller made for the worker Job.
func (e *testEnv) workerPods() []corev1.Pod {
	e.t.Helper()
	pods, err := e.cs.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: batchv1.JobNameLabel + "=" + kube.WorkerJobName,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return pods.Items
}

// eventually polls cond until it holds, failing the test after a minute.
func (e *testEnv) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition
	}
}

// defaultManifests renders, strictly decodes and parses the default manifests.
func defaultManifests(t testing.TB) *kube.Manifests {
	t.Helper()
	return renderParsed(t, kube.DefaultParams())
}
