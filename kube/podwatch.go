package kube

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// watchPods watches the worker Job's Pods and releases the leases of every one that is
// deleted, evicted or failed, at once, instead of waiting for the leases to expire.
func (d *Driver) watchPods(ctx context.Context, c Coordinator) error {
	selector := labels.Set{batchv1.ControllerUidLabel: string(d.job.UID)}.String()
	factory := informers.NewSharedInformerFactoryWithOptions(d.cs, 0,
		informers.WithNamespace(d.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	informer := factory.Core().V1().Pods().Informer()
	// The informer calls one handler's functions one at a time, so released needs no lock.
	released := map[string]bool{}
	release := func(pod *corev1.Pod, why string) {
		if released[pod.Name] {
			return
		}
		released[pod.Name] = true
		n := c.ReleaseWorker(pod.Name)
		d.log.Info().Str("pod", pod.Name).Str("why", why).Int("leases", n).Msg("worker pod gone: released its leases")
		if n > 0 {
			d.event(ctx, corev1.EventTypeNormal, "LeasesReleased",
				fmt.Sprintf("worker pod %s %s: %d lease(s) handed to other workers at once", pod.Name, why, n))
		}
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { d.checkPod(obj, release) },
		UpdateFunc: func(_, obj any) { d.checkPod(obj, release) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				release(pod, "deleted")
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watch worker pods: %w", err)
	}
	if err := informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		d.log.Warn().Err(err).Msg("watch worker pods (list/watch pods)")
	}); err != nil {
		return fmt.Errorf("watch worker pods: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), informer.HasSynced) && ctx.Err() == nil {
		return fmt.Errorf("list pods in %s: no answer within a minute (does the Role grant list and watch on pods?)", d.ns)
	}
	<-ctx.Done()
	return nil
}

// checkPod releases a pod that is terminating, failed, or marked for disruption (eviction,
// preemption, node drain).
func (d *Driver) checkPod(obj any, release func(*corev1.Pod, string)) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	switch {
	case pod.DeletionTimestamp != nil:
		release(pod, "is being deleted")
	case pod.Status.Phase == corev1.PodFailed:
		why := "failed"
		if pod.Status.Reason != "" {
			why += " (" + pod.Status.Reason + ")"
		}
		release(pod, why)
	default:
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.DisruptionTarget && cond.Status == corev1.ConditionTrue {
				release(pod, "is being evicted ("+cond.Reason+")")
			}
		}
	}
}
