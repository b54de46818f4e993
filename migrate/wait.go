package migrate

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krsync/krsync/kube"
)

// pollEvery is how often a wait reads the objects it waits for.
const pollEvery = 500 * time.Millisecond

// poll calls cond until it says done, ctx ends or timeout passes; then the error is
// timedOut's description of what is still missing.
func poll(ctx context.Context, timeout time.Duration, cond func() (done bool, missing string, err error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		done, missing, err := cond()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %s (--timeout)", missing, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// podsMounting lists the Pods of the namespace, but krsync's own, that run (or may still
// run) with claim mounted.
func podsMounting(ctx context.Context, cs kubernetes.Interface, ns, claim string) ([]corev1.Pod, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Pods in %s: %w", ns, err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if kube.IsCopyPod(&p) || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if mounts(&p.Spec, claim) {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// waitPodsGone waits until no Pod mounts claim any more.
func waitPodsGone(ctx context.Context, cs kubernetes.Interface, ns, claim string, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, string, error) {
		pods, err := podsMounting(ctx, cs, ns, claim)
		if err != nil || len(pods) == 0 {
			return len(pods) == 0, "", err
		}
		names := make([]string, len(pods))
		for i, p := range pods {
			names[i] = p.Name
		}
		return false, fmt.Sprintf("Pods still mount %s: %s (a CronJob's running Job? a long terminationGracePeriodSeconds?)", claim, strings.Join(names, ", ")), nil
	})
}

// waitReady waits until each workload runs its Pods from its current spec, all ready.
func waitReady(ctx context.Context, cs kubernetes.Interface, ns string, workloads []Workload, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, string, error) {
		for _, w := range workloads {
			ready, status, err := isReady(ctx, cs, ns, w)
			if err != nil {
				return false, "", err
			}
			if !ready {
				return false, fmt.Sprintf("%s is not ready: %s", w, status), nil
			}
		}
		return true, "", nil
	})
}

// isReady says whether the controller has seen the workload's last change and all its
// Pods are of that version and ready; status says how far it is, for the timeout's error.
func isReady(ctx context.Context, cs kubernetes.Interface, ns string, w Workload) (bool, string, error) {
	switch w.Kind {
	case "Deployment":
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", fmt.Errorf("get %s: %w", w, err)
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.Replicas == want && s.UpdatedReplicas == want && s.ReadyReplicas == want && s.AvailableReplicas == want,
			fmt.Sprintf("%d of %d replicas updated, %d ready", s.UpdatedReplicas, want, s.ReadyReplicas), nil
	case "StatefulSet":
		st, err := cs.AppsV1().StatefulSets(ns).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", fmt.Errorf("get %s: %w", w, err)
		}
		want := int32(1)
		if st.Spec.Replicas != nil {
			want = *st.Spec.Replicas
		}
		s := st.Status
		return s.ObservedGeneration >= st.Generation && s.Replicas == want && s.UpdatedReplicas == want && s.ReadyReplicas == want,
			fmt.Sprintf("%d of %d replicas updated, %d ready", s.UpdatedReplicas, want, s.ReadyReplicas), nil
	case "DaemonSet":
		d, err := cs.AppsV1().DaemonSets(ns).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", fmt.Errorf("get %s: %w", w, err)
		}
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberReady == s.DesiredNumberScheduled,
			fmt.Sprintf("%d of %d pods updated, %d ready", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberReady), nil
	case "Pod":
		p, err := cs.CoreV1().Pods(ns).Get(ctx, w.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "not created yet", nil
		}
		if err != nil {
			return false, "", fmt.Errorf("get %s: %w", w, err)
		}
		return p.DeletionTimestamp == nil && podReady(p), fmt.Sprintf("phase %s", p.Status.Phase), nil
	}
	return true, "", nil // a CronJob runs on its schedule: nothing to wait for
}
