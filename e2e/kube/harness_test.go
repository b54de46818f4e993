package kubee2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"

	"github.com/krsync/krsync/internal/testing/imageroot"
	"github.com/krsync/krsync/internal/testing/kubelet"
	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// Names the manifests use (docs/design.md, "Kubernetes conventions").
const (
	coordinatorJob = "krsync-coordinator"
	workerJob      = "krsync-worker"
	serviceName    = "krsync-coordinator"
	servicePort    = 8080
	sourceClaim    = "source-pvc"
	destClaim      = "dest-pvc"
	stateDir       = ".krsync-state"
	// e2eImage is the image the manifests name: the kubelets run it from krsync's root file
	// system, with the krsync under test.
	e2eImage = "krsync:e2e"
)

// binary is krsync built from this tree, once per test binary.
func binary(t *testing.T) string { return testbin.Krsync(t) }

// cluster of one test: a namespace, kubelets (Nodes), and source and destination claims on
// host directories. The kubelets run every Pod in krsync's image (its root file system, the
// krsync under test mounted in it) with the securityContext its manifest gives it.
type testCluster struct {
	t        *testing.T
	rc       *rest.Config
	cs       kubernetes.Interface
	dyn      dynamic.Interface
	mapper   meta.RESTMapper
	ns       string
	bin      string
	image    *kubelet.Image
	token    string
	ports    *kubelet.Ports
	kubelets []*kubelet.Kubelet
	src, dst string
}

type clusterOptions struct {
	nodes int
	// access is the claims' access mode (ReadWriteMany unless set).
	access corev1.PersistentVolumeAccessMode
}

func newCluster(t *testing.T, opts clusterOptions) *testCluster {
	t.Helper()
	plane := cluster.Require(t)
	bin := binary(t)
	image := imageroot.Image(t)
	image.Refs = []string{e2eImage} // a test's own application pods run as root, as from a base image
	rc, err := plane.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{
		t: t, rc: rc, cs: cs, dyn: dyn, bin: bin, image: image, ports: kubelet.NewPorts(),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery())),
		token:  "e2e-" + kubeplane.UniqueName("token"),
	}
	c.ns = kubeplane.Namespace(t, cs)
	c.waitFor("the default ServiceAccount of "+c.ns, time.Minute, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(c.ns).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, nil
	})
	root := t.TempDir()
	c.src, c.dst = filepath.Join(root, "source"), filepath.Join(root, "dest")
	for _, d := range []string{c.src, c.dst} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	access := opts.access
	if access == "" {
		access = corev1.ReadWriteMany
	}
	c.claim(sourceClaim, c.src, access)
	c.claim(destClaim, c.dst, access)
	if opts.nodes == 0 {
		opts.nodes = 1
	}
	for range opts.nodes {
		c.addKubelet(filepath.Join(root, "kubelet"))
	}
	t.Cleanup(c.dumpOnFailure)
	return c
}

// addKubelet starts one more Node; it stops (and its Node goes) when the test ends.
func (c *testCluster) addKubelet(dir string) *kubelet.Kubelet {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	kl, err := kubelet.Start(ctx, kubelet.Config{
		RESTConfig: c.rc, NodeName: kubeplane.UniqueName("node"), Binary: c.bin, Image: c.image, Ports: c.ports,
		Dir:    filepath.Join(dir, fmt.Sprint(len(c.kubelets))),
		Logger: zerolog.New(zerolog.NewTestWriter(c.t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		cancel()
		c.t.Fatal(err)
	}
	c.kubelets = append(c.kubelets, kl)
	c.t.Cleanup(func() {
		if err := kl.Stop(); err != nil {
			c.t.Error(err)
		}
		cancel()
	})
	return kl
}

// claim creates a hostPath PersistentVolume on dir and a claim pre-bound to it.
func (c *testCluster) claim(name, dir string, access corev1.PersistentVolumeAccessMode) {
	c.t.Helper()
	ctx := context.Background()
	size := resource.MustParse("10Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: c.ns + "-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{access},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: c.ns, Name: name},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		},
	}
	if _, err := c.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create PV for %s: %v", name, err)
	}
	c.t.Cleanup(func() {
		_ = c.cs.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{access}, VolumeName: pv.Name, StorageClassName: ptr.To(""),
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if _, err := c.cs.CoreV1().PersistentVolumeClaims(c.ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create claim %s: %v", name, err)
	}
}

// hostileRoot is the owner, mode and mtime generate gives the root of a hostile source: the
// pods run as uid 0 with a few capabilities, and a root they do not own is where those count
// (putting back its mtime after the state directory is removed needs FOWNER).
var hostileRoot = struct {
	uid, gid int
	mode     os.FileMode
	mtime    time.Time
}{4321, 4322, 0o751, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)}

// generate writes a seeded tree into the source claim's directory; a hostile one gets a
// foreign root too.
func (c *testCluster) generate(spec treegen.Spec) {
	c.t.Helper()
	if _, err := treegen.Generate(c.src, spec); err != nil {
		c.t.Fatalf("generate tree (seed %d): %v", spec.Seed, err)
	}
	if spec.Hostile {
		r := hostileRoot
		if err := os.Chown(c.src, r.uid, r.gid); err != nil {
			c.t.Fatal(err)
		}
		if err := os.Chmod(c.src, r.mode); err != nil {
			c.t.Fatal(err)
		}
		if err := os.Chtimes(c.src, r.mtime, r.mtime); err != nil {
			c.t.Fatal(err)
		}
	}
	c.t.Logf("source tree: seed %d, %d files, hostile %v", spec.Seed, spec.Files, spec.Hostile)
}

// scanSource records the source so sourceUnchanged can prove the read-only mount was honoured.
func (c *testCluster) scanSource() *treecmp.Tree {
	c.t.Helper()
	tree, err := treecmp.Scan(c.src, treecmp.Options{SymlinkTimes: true})
	if err != nil {
		c.t.Fatal(err)
	}
	return tree
}

// sourceUnchanged checks the source afterwards, byte for byte and metadata too: the read-only
// mounts should make a change impossible, and this proves it from outside.
func (c *testCluster) sourceUnchanged(before *treecmp.Tree) {
	c.t.Helper()
	after := c.scanSource()
	if diffs := treecmp.Diff(before, after, treecmp.Options{SymlinkTimes: true}); len(diffs) > 0 {
		c.t.Errorf("the read-only source changed during the run:\n%s", treecmp.Format(diffs, 30))
	}
}

// destEqualsSource compares with the independent comparator, the roots' owners, modes and
// mtimes included; the coordinator's journal is the only thing allowed in the destination that
// the source lacks.
func (c *testCluster) destEqualsSource() {
	c.t.Helper()
	err := treecmp.Equal(c.src, c.dst, treecmp.Options{Exclude: func(rel string) bool {
		return rel == stateDir || strings.HasPrefix(rel, stateDir+"/")
	}})
	if err != nil {
		c.t.Error(err)
	}
}

// render runs `krsync manifests` as a user would.
func (c *testCluster) render(extra ...string) []byte {
	c.t.Helper()
	args := append([]string{"manifests", "--namespace", c.ns, "--source-pvc", sourceClaim, "--dest-pvc", destClaim,
		"--image", e2eImage, "--token", c.token}, extra...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("krsync %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// edit changes a typed object of the rendered manifests before it is applied.
type edit func(obj runtime.Object)

// apply decodes the stream, applies the edits and server-side applies every object in order.
func (c *testCluster) apply(stream []byte, edits ...edit) {
	c.t.Helper()
	ctx := context.Background()
	// kube.Decode is the one reader of a manifest stream (strict, as `krsync apply` reads it).
	objs, err := kube.Decode(stream)
	if err != nil {
		c.t.Fatalf("decode manifests: %v", err)
	}
	n := 0
	for _, obj := range objs {
		kinds, _, err := scheme.Scheme.ObjectKinds(obj)
		if err != nil {
			c.t.Fatal(err)
		}
		gvk := &kinds[0]
		for _, e := range edits {
			e(obj)
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			c.t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetGroupVersionKind(*gvk)
		delete(u.Object, "status")
		mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			c.t.Fatalf("%s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = c.dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = c.dyn.Resource(mapping.Resource).Namespace(c.ns)
		}
		if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "krsync-e2e", Force: true}); err != nil {
			c.t.Fatalf("server-side apply %s %s: %v", gvk.Kind, u.GetName(), err)
		}
		n++
	}
	if n == 0 {
		c.t.Fatal("krsync manifests printed no objects")
	}
}

// coordinatorEnv sets (or adds) an environment variable of the coordinator container.
func coordinatorEnv(name, value string) edit {
	return func(obj runtime.Object) {
		job, ok := obj.(*batchv1.Job)
		if !ok || job.Name != coordinatorJob {
			return
		}
		c := &job.Spec.Template.Spec.Containers[0]
		for i := range c.Env {
			if c.Env[i].Name == name {
				c.Env[i] = corev1.EnvVar{Name: name, Value: value}
				return
			}
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	}
}

// withoutVerb removes one verb of one resource from the coordinator's Role.
func withoutVerb(resource, verb string) edit {
	return func(obj runtime.Object) {
		role, ok := obj.(*rbacv1.Role)
		if !ok {
			return
		}
		var rules []rbacv1.PolicyRule
		for _, r := range role.Rules {
			if contains(r.Resources, resource) {
				var verbs []string
				for _, v := range r.Verbs {
					if v != verb {
						verbs = append(verbs, v)
					}
				}
				r.Verbs = verbs
			}
			if len(r.Verbs) > 0 {
				rules = append(rules, r)
			}
		}
		role.Rules = rules
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds, failing the test after timeout.
func (c *testCluster) waitFor(what string, timeout time.Duration, cond func() (bool, error)) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond) // polling a condition with a deadline
	}
}

// jobCondition returns the Job's terminal condition type (Complete or Failed), or "".
func (c *testCluster) jobCondition(name string) (batchv1.JobConditionType, *batchv1.Job, error) {
	job, err := c.cs.BatchV1().Jobs(c.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", nil, err
	}
	for _, cond := range job.Status.Conditions {
		if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
			return cond.Type, job, nil
		}
	}
	return "", job, nil
}

// waitJob waits for a Job to end and returns how it ended.
func (c *testCluster) waitJob(name string, timeout time.Duration) (batchv1.JobConditionType, *batchv1.Job) {
	c.t.Helper()
	var got batchv1.JobConditionType
	var job *batchv1.Job
	c.waitFor("Job "+name+" to finish", timeout, func() (bool, error) {
		var err error
		got, job, err = c.jobCondition(name)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return got != "", err
	})
	return got, job
}

// pods lists the Pods of a Job.
func (c *testCluster) pods(job string) []corev1.Pod {
	c.t.Helper()
	list, err := c.cs.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job})
	if err != nil {
		c.t.Fatal(err)
	}
	return list.Items
}

// terminationMessages joins the termination messages of a Job's containers.
func (c *testCluster) terminationMessages(job string) string {
	c.t.Helper()
	var msgs []string
	for _, p := range c.pods(job) {
		for _, st := range p.Status.ContainerStatuses {
			if st.State.Terminated != nil && st.State.Terminated.Message != "" {
				msgs = append(msgs, p.Name+": "+st.State.Terminated.Message)
			}
		}
	}
	return strings.Join(msgs, "\n")
}

// events lists the Events of the namespace as "Kind/name Type Reason: message" lines.
func (c *testCluster) events() []corev1.Event {
	c.t.Helper()
	list, err := c.cs.CoreV1().Events(c.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return list.Items
}

// coordinatorClient reaches the coordinator's lease API through the loopback port the
// kubelets gave its Service.
func (c *testCluster) coordinatorClient() *leaseapi.Client {
	c.t.Helper()
	port, err := c.ports.Service(c.ns, serviceName, servicePort)
	if err != nil {
		c.t.Fatal(err)
	}
	client, err := leaseapi.NewClient(fmt.Sprintf("http://127.0.0.1:%d", port), leaseapi.ClientOptions{Token: c.token, GiveUpAfter: 5 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	return client
}

// dumpOnFailure prints what a failed test needs: process logs, Jobs, Pods and Events.
func (c *testCluster) dumpOnFailure() {
	if !c.t.Failed() {
		return
	}
	var b strings.Builder
	for _, kl := range c.kubelets {
		kl.DumpLogs(&b, 6<<10)
	}
	ctx := context.Background()
	if jobs, err := c.cs.BatchV1().Jobs(c.ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, j := range jobs.Items {
			fmt.Fprintf(&b, "job %s: active %d succeeded %d failed %d conditions %v\n", j.Name, j.Status.Active, j.Status.Succeeded, j.Status.Failed, j.Status.Conditions)
		}
	}
	if pods, err := c.cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s on %q: %s %s\n", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Message)
		}
	}
	for _, e := range c.events() {
		fmt.Fprintf(&b, "event %s/%s %s %s: %s\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Type, e.Reason, e.Message)
	}
	c.t.Log("diagnostics:\n" + b.String())
}

// containerLog returns the end of the captured output of the containers of a Job's Pods.
func (c *testCluster) containerLog(job string, maxBytes int64) string {
	var b strings.Builder
	for _, kl := range c.kubelets {
		for _, l := range kl.Logs() {
			if l.Namespace == c.ns && strings.HasPrefix(l.Pod, job+"-") {
				data, err := os.ReadFile(l.Path)
				if err != nil {
					fmt.Fprintf(&b, "%s: %v\n", l.Pod, err)
					continue
				}
				if int64(len(data)) > maxBytes {
					data = data[int64(len(data))-maxBytes:]
				}
				fmt.Fprintf(&b, "%s/%s:\n%s\n", l.Pod, l.Container, data)
			}
		}
	}
	return b.String()
}
