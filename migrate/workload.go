package migrate

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// pausedLabel is the node label a paused DaemonSet's Pods require: no node has it, so the
// DaemonSet controller removes them (a DaemonSet has no replica count to set to zero).
const pausedLabel = "krsync.io/migrate-paused"

// object is the part of a workload migrate changes, whatever its kind.
type object struct {
	meta     *metav1.ObjectMeta
	spec     *corev1.PodSpec // the Pod template's
	replicas **int32         // Deployment, StatefulSet
	suspend  **bool          // CronJob
	paused   bool            // DaemonSet: pause by nodeSelector
}

// edit reads the workload, lets change modify it and writes it back when change says it
// did, again on a conflict with another writer. A workload that is gone is an error.
func edit(ctx context.Context, cs kubernetes.Interface, ns string, w Workload, change func(o object) bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		switch w.Kind {
		case "Deployment":
			api := cs.AppsV1().Deployments(ns)
			d, err := api.Get(ctx, w.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if change(object{meta: &d.ObjectMeta, spec: &d.Spec.Template.Spec, replicas: &d.Spec.Replicas}) {
				_, err = api.Update(ctx, d, metav1.UpdateOptions{})
			}
			return err
		case "StatefulSet":
			api := cs.AppsV1().StatefulSets(ns)
			s, err := api.Get(ctx, w.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if change(object{meta: &s.ObjectMeta, spec: &s.Spec.Template.Spec, replicas: &s.Spec.Replicas}) {
				_, err = api.Update(ctx, s, metav1.UpdateOptions{})
			}
			return err
		case "DaemonSet":
			api := cs.AppsV1().DaemonSets(ns)
			d, err := api.Get(ctx, w.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if change(object{meta: &d.ObjectMeta, spec: &d.Spec.Template.Spec, paused: true}) {
				_, err = api.Update(ctx, d, metav1.UpdateOptions{})
			}
			return err
		case "CronJob":
			api := cs.BatchV1().CronJobs(ns)
			c, err := api.Get(ctx, w.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if change(object{meta: &c.ObjectMeta, spec: &c.Spec.JobTemplate.Spec.Template.Spec, suspend: &c.Spec.Suspend}) {
				_, err = api.Update(ctx, c, metav1.UpdateOptions{})
			}
			return err
		}
		return fmt.Errorf("kind %s is not one krsync migrates", w.Kind)
	})
	if err != nil {
		return fmt.Errorf("%s in %s: %w", w, ns, err)
	}
	return nil
}

func setAnno(m *metav1.ObjectMeta, k, v string) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[k] = v
}

// scaleDown stops the workload's Pods and records, in the same write, what brings them
// back; a workload already stopped by an earlier run keeps its first record.
func scaleDown(o object) bool {
	a := o.meta.Annotations
	changed := false
	switch {
	case o.replicas != nil:
		if !annotated(a, AnnoReplicas) {
			n := int32(1) // the API's default for a nil count
			if *o.replicas != nil {
				n = **o.replicas
			}
			setAnno(o.meta, AnnoReplicas, strconv.Itoa(int(n)))
			changed = true
		}
		if *o.replicas == nil || **o.replicas != 0 {
			*o.replicas = new(int32)
			changed = true
		}
	case o.suspend != nil:
		if !annotated(a, AnnoSuspended) {
			setAnno(o.meta, AnnoSuspended, strconv.FormatBool(*o.suspend != nil && **o.suspend))
			changed = true
		}
		if *o.suspend == nil || !**o.suspend {
			yes := true
			*o.suspend = &yes
			changed = true
		}
	case o.paused:
		if !annotated(a, AnnoPaused) {
			setAnno(o.meta, AnnoPaused, "true")
			changed = true
		}
		if o.spec.NodeSelector[pausedLabel] != "true" {
			if o.spec.NodeSelector == nil {
				o.spec.NodeSelector = map[string]string{}
			}
			o.spec.NodeSelector[pausedLabel] = "true"
			changed = true
		}
	}
	return changed
}

func annotated(a map[string]string, k string) bool {
	_, ok := a[k]
	return ok
}

// scaleUp restores what scaleDown recorded and removes the record, in one write.
func scaleUp(o object) bool {
	a := o.meta.Annotations
	switch {
	case o.replicas != nil && annotated(a, AnnoReplicas):
		n, err := strconv.Atoi(a[AnnoReplicas])
		if err != nil {
			n = 1
		}
		r := int32(n)
		*o.replicas = &r
		delete(o.meta.Annotations, AnnoReplicas)
		return true
	case o.suspend != nil && annotated(a, AnnoSuspended):
		s := a[AnnoSuspended] == "true"
		*o.suspend = &s
		delete(o.meta.Annotations, AnnoSuspended)
		return true
	case o.paused && annotated(a, AnnoPaused):
		delete(o.spec.NodeSelector, pausedLabel)
		delete(o.meta.Annotations, AnnoPaused)
		return true
	}
	return false
}

// switchClaim points every volume of the Pod template that uses claim from at claim to.
func switchClaim(from, to string) func(o object) bool {
	return func(o object) bool {
		changed := false
		for i := range o.spec.Volumes {
			if v := o.spec.Volumes[i].PersistentVolumeClaim; v != nil && v.ClaimName == from {
				v.ClaimName = to
				changed = true
			}
		}
		return changed
	}
}
