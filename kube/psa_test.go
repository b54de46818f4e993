package kube_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/kube"
)

// psaNamespace makes a namespace whose Pod Security Admission enforces level.
func psaNamespace(t *testing.T, cs kubernetes.Interface, level string) string {
	t.Helper()
	ns := kubeplane.Namespace(t, cs)
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"` + level + `","pod-security.kubernetes.io/enforce-version":"latest"}}}`)
	if _, err := cs.CoreV1().Namespaces().Patch(context.Background(), ns, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// admitted asks the API server to create a Pod of spec in ns without storing it (dry run):
// the admission plugins, PodSecurity among them, decide as for a real Pod.
func admitted(t *testing.T, cs kubernetes.Interface, ns string, spec corev1.PodSpec) error {
	t.Helper()
	spec.ServiceAccountName = "" // the run's ServiceAccount is not applied here
	spec.NodeName = ""
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "psa-"}, Spec: spec}
	_, err := cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil && !(apierrors.IsForbidden(err) && strings.Contains(err.Error(), "violates PodSecurity")) {
		t.Fatalf("dry-run create in %s: %v (want admitted, or refused by PodSecurity)", ns, err)
	}
	return err
}

// TestPodSecurityAdmission: the real API server's PodSecurity admission admits the
// coordinator's Pod and the worker Pod the coordinator builds from it at "baseline" for the
// default manifests and at "restricted" for --restricted, and refuses the default ones at
// "restricted" (so the check is real: PodSecurity is on, and root with capabilities is not
// restricted).
func TestPodSecurityAdmission(t *testing.T) {
	plane := cluster.Require(t)
	cs, err := plane.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	levels := map[string]string{"baseline": psaNamespace(t, cs, "baseline"), "restricted": psaNamespace(t, cs, "restricted")}
	tests := []struct {
		name       string
		restricted bool
		level      string
		admitted   bool
	}{
		{"default at baseline", false, "baseline", true},
		{"default at restricted", false, "restricted", false},
		{"--restricted at restricted", true, "restricted", true},
		{"--restricted at baseline", true, "baseline", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := kube.DefaultParams()
			p.Restricted = tc.restricted
			m := renderParsed(t, p)
			coordinator := m.Coordinator.Spec.Template.Spec
			// The worker Pod as the coordinator builds it from its own (inherit.go).
			self := *coordinator.DeepCopy()
			self.ServiceAccountName = ""
			e := newEnv(t, envOptions{selfSpec: &self, workerTemplate: m.WorkerTemplate.Data[kube.WorkerTemplateKey]})
			d, err := kube.NewDriver(context.Background(), e.cs, "default", e.options(2), testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			worker := d.WorkerJob().Spec.Template.Spec
			for who, spec := range map[string]corev1.PodSpec{"coordinator": coordinator, "worker": worker} {
				err := admitted(t, cs, levels[tc.level], spec)
				if tc.admitted && err != nil {
					t.Errorf("%s Pod refused at %s: %v", who, tc.level, err)
				}
				if !tc.admitted && err == nil {
					t.Errorf("%s Pod admitted at %s, want refused (PodSecurity not enforcing?)", who, tc.level)
				}
			}
		})
	}
}

// renderParsed renders p and parses the objects.
func renderParsed(t testing.TB, p kube.Params) *kube.Manifests {
	t.Helper()
	files, err := kube.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kube.Decode(kube.Stream(files))
	if err != nil {
		t.Fatal(err)
	}
	m, err := kube.ParseManifests(objs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
