package kubeplane_test

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krsync/krsync/internal/testing/kubeplane"
)

var cluster kubeplane.Shared

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// TestPodIsScheduledOntoRegisteredNode proves the plane works end to end: the API server takes
// objects and the scheduler binds a Pod to a node that AddNode registered.
func TestPodIsScheduledOntoRegisteredNode(t *testing.T) {
	plane := cluster.Require(t)
	cs, err := plane.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := kubeplane.Namespace(t, cs)
	node := kubeplane.UniqueName("node")
	kubeplane.AddNode(t, cs, node, nil)
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{
			Containers:   []corev1.Container{{Name: "c", Image: "krsync"}},
			NodeSelector: map[string]string{"kubernetes.io/hostname": node},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := cs.CoreV1().Pods(ns).Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.NodeName == node {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not bound to %s within 60s: %+v", node, got.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUniqueName(t *testing.T) {
	tests := []struct{ name, in string }{
		{"plain", "abc"},
		{"test path", "TestFoo/sub_case"},
		{"long", "a-very-long-name-that-goes-on-and-on-and-on-and-on-beyond-sixty-three-bytes"},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := kubeplane.UniqueName(tc.in)
			if len(got) > 63 {
				t.Errorf("UniqueName(%q) = %q: longer than 63", tc.in, got)
			}
			for _, r := range got {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
					t.Errorf("UniqueName(%q) = %q: not a DNS label", tc.in, got)
				}
			}
			if got[0] == '-' || got[len(got)-1] == '-' {
				t.Errorf("UniqueName(%q) = %q: starts or ends with -", tc.in, got)
			}
		})
	}
}
