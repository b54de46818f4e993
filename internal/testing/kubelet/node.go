package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// heartbeatEvery renews the node Lease well inside the node lifecycle controller's 40 s grace.
const heartbeatEvery = 10 * time.Second

// nodeLeaseSeconds is the Lease duration a real kubelet uses.
const nodeLeaseSeconds = 40

// registerNode creates (or takes over) the Node, marks it Ready and renews its Lease once.
func (k *Kubelet) registerNode(ctx context.Context) error {
	labels := map[string]string{
		"kubernetes.io/hostname": k.cfg.NodeName,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     runtime.GOARCH,
		"beta.kubernetes.io/os":  "linux",
	}
	for key, v := range k.cfg.Labels {
		labels[key] = v
	}
	nodes := k.cs.CoreV1().Nodes()
	node, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: labels}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		node, err = nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", k.cfg.NodeName, err)
	}
	k.nodeUID = node.UID
	if err := k.heartbeat(ctx); err != nil {
		return err
	}
	return nil
}

// capacity is what the Node advertises; the scheduler only needs it to be generous.
func (k *Kubelet) capacity() corev1.ResourceList {
	if len(k.cfg.Capacity) > 0 {
		return k.cfg.Capacity
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("64Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
}

// heartbeat renews the Node's Lease in kube-node-lease and refreshes its status (Ready).
func (k *Kubelet) heartbeat(ctx context.Context) error {
	name := k.cfg.NodeName
	now := metav1.NewMicroTime(time.Now())
	leases := k.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name: name,
				// Owned by the Node, as a real kubelet does, so deleting the Node removes it.
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: k.nodeUID}},
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](nodeLeaseSeconds), RenewTime: &now},
		}, metav1.CreateOptions{})
	case err == nil:
		lease.Spec.RenewTime = &now
		lease.Spec.HolderIdentity = ptr.To(name)
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("node %s: renew lease: %w", name, err)
	}
	node, err := k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	// A patch, not an update: the node controllers write the same object concurrently.
	body, err := json.Marshal(map[string]any{"status": k.nodeStatus(node.Status)})
	if err != nil {
		return fmt.Errorf("node %s: encode status: %w", name, err)
	}
	if _, err := k.cs.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("node %s: update status: %w", name, err)
	}
	return nil
}

func (k *Kubelet) nodeStatus(old corev1.NodeStatus) corev1.NodeStatus {
	now := metav1.Now()
	transition := func(t corev1.NodeConditionType, s corev1.ConditionStatus) metav1.Time {
		for _, c := range old.Conditions {
			if c.Type == t && c.Status == s {
				return c.LastTransitionTime
			}
		}
		return now
	}
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: transition(t, s)}
	}
	return corev1.NodeStatus{
		Capacity:    k.capacity(),
		Allocatable: k.capacity(),
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "test kubelet"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "test kubelet"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "test kubelet"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "test kubelet running krsync processes"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: k.cfg.NodeName},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "v1.37.2-test", OperatingSystem: "linux", Architecture: runtime.GOARCH,
			ContainerRuntimeVersion: "process://krsync",
		},
	}
}

// waitSchedulable polls until the node lifecycle controller has lifted the not-ready taint
// that node admission puts on every new Node.
func (k *Kubelet) waitSchedulable(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		node, err := k.cs.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node %s: %w", k.cfg.NodeName, err)
		}
		blocking := ""
		for _, t := range node.Spec.Taints {
			if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
				blocking = t.Key
			}
		}
		if blocking == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: still tainted %s after %s", k.cfg.NodeName, blocking, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // polling a condition
		}
	}
}
