package kube_test

import (
	"bytes"
	"context"
	"os/exec"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/kube"
)

// kustomize runs `kubectl kustomize dir` and parses the objects it prints. kubectl is part of
// the machine image (not of Debian's packages): without it the test skips, loudly, and fails
// under CI=true.
func kustomize(t *testing.T, dir string) *kube.Manifests {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		testbin.SkipOrFail(t, "kubectl not found on PATH: the kustomize examples are NOT checked: "+err.Error())
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v: %s", dir, err, stderr.String())
	}
	objs, err := kube.Decode(stdout.Bytes())
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	m, err := kube.ParseManifests(objs)
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	return m
}

// TestSchedulingOverlayReachesBothPods: examples/scheduling patches the coordinator Job once
// (tolerations, nodeSelector, resources, variables); the worker template has none of these,
// and the worker Job the coordinator builds from its own Pod carries every one of them.
func TestSchedulingOverlayReachesBothPods(t *testing.T) {
	m := kustomize(t, "../examples/scheduling")
	spec := m.Coordinator.Spec.Template.Spec
	coord := spec.Containers[0]
	toleration := corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "storage", Effect: corev1.TaintEffectNoSchedule}
	if !hasToleration(spec.Tolerations, toleration) || spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Fatalf("the overlay did not reach the coordinator Job: tolerations %+v, nodeSelector %v", spec.Tolerations, spec.NodeSelector)
	}
	if lim := coord.Resources.Limits[corev1.ResourceMemory]; lim.Cmp(resource.MustParse("3Gi")) != 0 {
		t.Fatalf("coordinator memory limit %s, want the overlay's 3Gi", lim.String())
	}
	w := m.WorkerJob.Spec.Template.Spec
	if len(w.Tolerations) > 0 || len(w.NodeSelector) > 0 || w.Affinity != nil || len(w.Containers[0].Resources.Limits) > 0 {
		t.Fatalf("the worker template sets scheduling or resources of its own, which would hide the coordinator's: %+v", w)
	}

	// The Pod the Job controller would make from the coordinator Job, on the real API server
	// (admission adds its defaults), is what the driver reads.
	self := *spec.DeepCopy()
	self.ServiceAccountName = "" // not applied here; the Pod is never run
	e := newEnv(t, envOptions{selfSpec: &self})
	d, err := kube.NewDriver(context.Background(), e.cs, "default", e.options(2), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	worker := d.WorkerJob().Spec.Template.Spec
	wc := worker.Containers[0]
	if !hasToleration(worker.Tolerations, toleration) {
		t.Errorf("worker tolerations %+v, want the overlay's %+v", worker.Tolerations, toleration)
	}
	if !equality.Semantic.DeepEqual(worker.NodeSelector, spec.NodeSelector) {
		t.Errorf("worker nodeSelector %v, want %v", worker.NodeSelector, spec.NodeSelector)
	}
	if !equality.Semantic.DeepEqual(wc.Resources, coord.Resources) {
		t.Errorf("worker resources %+v, want the coordinator's %+v", wc.Resources, coord.Resources)
	}
	if !equality.Semantic.DeepEqual(worker.SecurityContext, spec.SecurityContext) {
		t.Errorf("worker Pod securityContext %+v, want the coordinator's %+v", worker.SecurityContext, spec.SecurityContext)
	}
	env := map[string]string{}
	for _, v := range wc.Env {
		env[v.Name] = v.Value
	}
	if env["TZ"] != "UTC" || env["GOMEMLIMIT"] != "2750MiB" {
		t.Errorf("worker env %v, want the overlay's TZ and GOMEMLIMIT", env)
	}
	if _, ok := env["KRSYNC_FPART_OPTS"]; ok {
		t.Error("the workers got the coordinator's own KRSYNC_FPART_OPTS")
	}
	if wc.SecurityContext == nil || wc.SecurityContext.Capabilities == nil {
		t.Error("the worker container lost its own securityContext (its capabilities)")
	}
}

func hasToleration(list []corev1.Toleration, want corev1.Toleration) bool {
	for _, t := range list {
		if t.MatchToleration(&want) && t.Value == want.Value && t.Operator == want.Operator {
			return true
		}
	}
	return false
}
