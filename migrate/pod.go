package migrate

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A Pod no controller owns has no replica count to set to zero: krsync records it in the
// migration's state on the new claim (before anything else happens to it), deletes it, and
// creates it again from that record, on the new claim, or on the old one when rolled back.

// podRecord is what creating the Pod again needs: its name, labels, annotations and spec,
// with the claims it had (the old one), without what the API server and the scheduler set.
func podRecord(p *corev1.Pod) *corev1.Pod {
	spec := p.Spec.DeepCopy()
	spec.NodeName = "" // the scheduler places it again (next to its volumes)
	spec.EphemeralContainers = nil
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, Annotations: p.Annotations,
		},
		Spec: *spec,
	}
}

// stopPod records the Pod (once) and deletes it.
func (m *migration) stopPod(ctx context.Context, name string) error {
	api := m.CS.CoreV1().Pods(m.ns)
	if _, recorded := m.st.Pods[name]; !recorded {
		pod, err := api.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("Pod %s is gone and krsync has no record of it: create it again yourself on %s", name, m.dst.Name)
		}
		if err != nil {
			return fmt.Errorf("get Pod %s/%s: %w", m.ns, name, err)
		}
		if m.st.Pods == nil {
			m.st.Pods = map[string]*corev1.Pod{}
		}
		m.st.Pods[name] = podRecord(pod)
		if err := m.save(ctx); err != nil {
			return err
		}
	}
	if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Pod %s/%s: %w", m.ns, name, err)
	}
	return nil
}

// startPod creates the recorded Pod again with the old claim's volumes on claim. A Pod
// never stopped (no record) or already there is left as it is.
func (m *migration) startPod(ctx context.Context, name, claim string) error {
	rec, ok := m.st.Pods[name]
	if !ok {
		return nil
	}
	pod := rec.DeepCopy()
	for i := range pod.Spec.Volumes {
		if v := pod.Spec.Volumes[i].PersistentVolumeClaim; v != nil && v.ClaimName == m.st.Source {
			v.ClaimName = claim
		}
	}
	_, err := m.CS.CoreV1().Pods(m.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Pod %s/%s again on %s: %w", m.ns, name, claim, err)
	}
	return nil
}

// podReady says whether the Pod exists and is ready.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
