package kube_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/kube"
)

// TestRenderedManifestsApplyAndRun: server-side apply of `krsync manifests -n NS` succeeds on
// the real API server, the Job controller makes the coordinator's Pod, and the worker Job the
// driver creates from the applied template gets its Pods from the Job controller too.
func TestRenderedManifestsApplyAndRun(t *testing.T) {
	e := newEnv(t, envOptions{})
	p := kube.DefaultParams()
	p.Namespace = e.ns
	p.Parallelism = 2
	p.Token = "test-token"
	files, err := kube.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.Decode(kube.Stream(files))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := kubeplane.Apply(ctx, e.cfg, "", objs); err != nil {
		t.Fatal(err)
	}
	// Applying twice is a no-op, as `kubectl apply` run again would be.
	if err := kubeplane.Apply(ctx, e.cfg, "", objs); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	var podName string
	e.eventually("the Job controller made the coordinator's Pod", func() bool {
		pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + kube.CoordinatorName})
		if err != nil || len(pods.Items) == 0 {
			return false
		}
		podName = pods.Items[0].Name
		return true
	})
	cm, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, kube.WorkerTemplateName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data[kube.WorkerTemplateKey] == "" {
		t.Fatal("the applied worker template is empty")
	}
	opts := e.options(p.Parallelism)
	opts.PodName = podName
	fc := &fakeCoordinator{}
	fc.setWork(5, 0)
	e.runDriver(e.cs, opts, fc)
	job := e.job()
	if *job.Spec.Parallelism != 2 {
		t.Errorf("worker Job parallelism %d, want 2", *job.Spec.Parallelism)
	}
	if img := job.Spec.Template.Spec.Containers[0].Image; img != p.Image {
		t.Errorf("worker image %q, want the coordinator's %q", img, p.Image)
	}
	e.eventually("the Job controller made 2 worker Pods", func() bool { return len(e.workerPods()) == 2 })
}

// TestKubectlAppliesManifestsDir: the exact README steps, `kubectl apply -f manifests` and
// `kubectl apply -k manifests`, succeed against the real API server (server-side dry run).
func TestKubectlAppliesManifestsDir(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH (it is part of the machine image, not installable here): skipping the kubectl apply check")
	}
	e := newEnv(t, envOptions{})
	plane := cluster.Require(t)
	for _, args := range [][]string{{"-f", "../manifests"}, {"-k", "../manifests"}} {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", plane.Kubeconfig, "-n", e.ns, "apply", "--dry-run=server"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("kubectl apply %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
