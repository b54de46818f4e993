package kubeplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// heartbeatEvery is well inside the node lifecycle controller's 40 s grace period.
const heartbeatEvery = 10 * time.Second

// AddNode registers a schedulable Node (Ready, 32 CPUs, 64 GiB, 110 pods) and keeps its
// heartbeat fresh until the test ends, then deletes it. Nodes are cluster-wide: pass a name
// unique to the test (UniqueName helps).
func AddNode(t testing.TB, cs kubernetes.Interface, name string, labels map[string]string) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
	for k, v := range labels {
		l[k] = v
	}
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}, metav1.CreateOptions{})
	if err != nil {
		cancel()
		t.Fatalf("register node %s: %v", name, err)
	}
	if node, err = markReady(ctx, cs, node); err != nil {
		cancel()
		t.Fatalf("node %s: %v", name, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(heartbeatEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = heartbeat(ctx, cs, name)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		err := cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete node %s: %v", name, err)
		}
	})
	return node
}

func markReady(ctx context.Context, cs kubernetes.Interface, node *corev1.Node) (*corev1.Node, error) {
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "kubeplane fake node", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
	}
	status := node.Status
	var updated *corev1.Node
	// The node lifecycle controller taints a new Node at once: retry on its conflicts.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := cs.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		current.Status = status
		updated, err = cs.CoreV1().Nodes().UpdateStatus(ctx, current, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mark ready: %w", err)
	}
	return updated, heartbeat(ctx, cs, node.Name)
}

// heartbeat renews the node's Lease in kube-node-lease and refreshes its Ready condition.
func heartbeat(ctx context.Context, cs kubernetes.Interface, name string) error {
	now := metav1.NewMicroTime(time.Now())
	leases := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		secs := int32(40)
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &secs, RenewTime: &now},
		}, metav1.CreateOptions{})
	case err == nil:
		lease.Spec.RenewTime = &now
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("node lease %s: %w", name, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range node.Status.Conditions {
			if node.Status.Conditions[i].Type == corev1.NodeReady {
				node.Status.Conditions[i].LastHeartbeatTime = metav1.Now()
			}
		}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node %s: heartbeat: %w", name, err)
	}
	return nil
}

// Namespace creates a namespace named after the test and deletes it when the test ends.
func Namespace(t testing.TB, cs kubernetes.Interface) string {
	t.Helper()
	name := UniqueName(t.Name())
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	// Pods need the namespace's default ServiceAccount, which the controller manager makes
	// a moment later; make it now so tests need not wait (it is the same object).
	_, err = cs.CoreV1().ServiceAccounts(name).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create the default ServiceAccount of %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// UniqueName turns s into a DNS-1123 label (at most 63 bytes) with a random suffix.
func UniqueName(s string) string {
	notDNS := regexp.MustCompile(`[^a-z0-9-]+`)
	s = strings.Trim(notDNS.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 50 {
		s = strings.TrimRight(s[:50], "-")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	if s == "" {
		s = "t"
	}
	return s + "-" + hex.EncodeToString(b)
}
