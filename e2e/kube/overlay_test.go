package kubee2e

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/kube"
)

// kustomize runs `kubectl kustomize dir` (kubectl is part of the machine image, not of
// Debian's packages: without it the test skips loudly, and fails under CI=true).
func kustomize(t *testing.T, dir string) []byte {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		testbin.SkipOrFail(t, "kubectl not found on PATH: the kustomize example is NOT run: "+err.Error())
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v: %s", dir, err, stderr.String())
	}
	return stdout.Bytes()
}

// coordinatorImage is the image `krsync manifests` renders for the test kubelet.
func (c *testCluster) coordinatorImage() string {
	c.t.Helper()
	objs, err := kube.Decode(c.render())
	if err != nil {
		c.t.Fatal(err)
	}
	m, err := kube.ParseManifests(objs)
	if err != nil {
		c.t.Fatal(err)
	}
	return m.Coordinator.Spec.Template.Spec.Containers[0].Image
}

// withImage sets the coordinator's image (the workers inherit it).
func withImage(image string) edit {
	return func(obj runtime.Object) {
		if job, ok := obj.(*batchv1.Job); ok {
			for i := range job.Spec.Template.Spec.Containers {
				job.Spec.Template.Spec.Containers[i].Image = image
			}
		}
	}
}

// TestSchedulingOverlaySetsBothPods: examples/scheduling patches only the coordinator Job
// (a toleration, a nodeSelector, resources, two variables). The only Node is tainted so that
// a pod without the toleration cannot run: the copy completes, so both pods tolerated it, and
// every worker Pod carries the overlay's resources and variables.
func TestSchedulingOverlaySetsBothPods(t *testing.T) {
	stream := kustomize(t, "../../examples/scheduling")
	c := newCluster(t, clusterOptions{})
	taint := []byte(`{"spec":{"taints":[{"key":"dedicated","value":"storage","effect":"NoSchedule"}]}}`)
	node := c.kubelets[0].NodeName()
	if _, err := c.cs.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, taint, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	c.generate(treegen.Spec{Seed: 23, Files: 200, Hostile: true})
	c.apply(stream, withImage(c.coordinatorImage()))

	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %q, want Complete; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	if got, _ := c.waitJob(workerJob, time.Minute); got != batchv1.JobComplete {
		t.Errorf("worker Job ended %q, want Complete", got)
	}
	c.destEqualsSource()
	workers := c.pods(workerJob)
	if len(workers) == 0 {
		t.Fatal("no worker pods")
	}
	for _, p := range workers {
		c := p.Spec.Containers[0]
		if lim := c.Resources.Limits[corev1.ResourceMemory]; lim.Cmp(resource.MustParse("3Gi")) != 0 {
			t.Errorf("worker pod %s: memory limit %s, want the overlay's 3Gi", p.Name, lim.String())
		}
		if req := c.Resources.Requests[corev1.ResourceCPU]; req.Cmp(resource.MustParse("500m")) != 0 {
			t.Errorf("worker pod %s: cpu request %s, want the overlay's 500m", p.Name, req.String())
		}
		env := map[string]string{}
		for _, v := range c.Env {
			env[v.Name] = v.Value
		}
		if env["TZ"] != "UTC" || env["GOMEMLIMIT"] == "" {
			t.Errorf("worker pod %s: env %v, want the overlay's TZ and GOMEMLIMIT", p.Name, env)
		}
		if p.Spec.NodeSelector["kubernetes.io/os"] != "linux" {
			t.Errorf("worker pod %s: nodeSelector %v, want the overlay's", p.Name, p.Spec.NodeSelector)
		}
	}
}
