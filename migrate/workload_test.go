package migrate

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestScaleDownRecordsAndScaleUpRestores: on the real API server, scaling down records what
// brings each kind back in the same write, a second scale-down (a rerun) keeps the first
// record, switching repoints only the old claim's volume, and scaling up restores the
// record and removes it.
func TestScaleDownRecordsAndScaleUpRestores(t *testing.T) {
	e := newEnv(t)
	e.deployment("web", oldClaim, 3)
	e.statefulSet("db", oldClaim, 2, "")
	e.daemonSet("agent", oldClaim)
	e.cronJob("nightly", oldClaim)
	ctx := context.Background()
	workloads := []Workload{{"Deployment", "web"}, {"StatefulSet", "db"}, {"DaemonSet", "agent"}, {"CronJob", "nightly"}}
	for _, w := range workloads {
		for range 2 {
			if err := edit(ctx, e.cs, e.ns, w, scaleDown); err != nil {
				t.Fatal(err)
			}
		}
		if err := edit(ctx, e.cs, e.ns, w, switchClaim(oldClaim, newClaim)); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "web", metav1.GetOptions{})
	s, _ := e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, "db", metav1.GetOptions{})
	ds, _ := e.cs.AppsV1().DaemonSets(e.ns).Get(ctx, "agent", metav1.GetOptions{})
	cj, _ := e.cs.BatchV1().CronJobs(e.ns).Get(ctx, "nightly", metav1.GetOptions{})
	if *d.Spec.Replicas != 0 || d.Annotations[AnnoReplicas] != "3" {
		t.Errorf("Deployment down: %d replicas, recorded %q; want 0, \"3\"", *d.Spec.Replicas, d.Annotations[AnnoReplicas])
	}
	if *s.Spec.Replicas != 0 || s.Annotations[AnnoReplicas] != "2" {
		t.Errorf("StatefulSet down: %d replicas, recorded %q; want 0, \"2\"", *s.Spec.Replicas, s.Annotations[AnnoReplicas])
	}
	if ds.Spec.Template.Spec.NodeSelector[pausedLabel] != "true" || ds.Annotations[AnnoPaused] != "true" {
		t.Errorf("DaemonSet down: nodeSelector %v, annotations %v", ds.Spec.Template.Spec.NodeSelector, ds.Annotations)
	}
	if !*cj.Spec.Suspend || cj.Annotations[AnnoSuspended] != "false" {
		t.Errorf("CronJob down: suspend %v, recorded %q; want true, \"false\"", *cj.Spec.Suspend, cj.Annotations[AnnoSuspended])
	}
	for _, spec := range []*corev1.PodSpec{&d.Spec.Template.Spec, &s.Spec.Template.Spec, &ds.Spec.Template.Spec, &cj.Spec.JobTemplate.Spec.Template.Spec} {
		if got := claimsOf(spec); got["data"] != newClaim || len(got) != 1 || spec.Volumes[0].EmptyDir == nil {
			t.Errorf("after the switch: claims %v, volumes %v; want data on %s and the emptyDir kept", got, spec.Volumes, newClaim)
		}
	}

	for _, w := range workloads {
		if err := edit(ctx, e.cs, e.ns, w, scaleUp); err != nil {
			t.Fatal(err)
		}
	}
	d, _ = e.cs.AppsV1().Deployments(e.ns).Get(ctx, "web", metav1.GetOptions{})
	s, _ = e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, "db", metav1.GetOptions{})
	ds, _ = e.cs.AppsV1().DaemonSets(e.ns).Get(ctx, "agent", metav1.GetOptions{})
	cj, _ = e.cs.BatchV1().CronJobs(e.ns).Get(ctx, "nightly", metav1.GetOptions{})
	if *d.Spec.Replicas != 3 || *s.Spec.Replicas != 2 || *cj.Spec.Suspend {
		t.Errorf("after scale up: Deployment %d, StatefulSet %d, CronJob suspended %v; want 3, 2, false", *d.Spec.Replicas, *s.Spec.Replicas, *cj.Spec.Suspend)
	}
	if _, ok := ds.Spec.Template.Spec.NodeSelector[pausedLabel]; ok {
		t.Errorf("after scale up the DaemonSet keeps its pause: %v", ds.Spec.Template.Spec.NodeSelector)
	}
	for _, a := range []map[string]string{d.Annotations, s.Annotations, ds.Annotations, cj.Annotations} {
		for _, k := range []string{AnnoReplicas, AnnoPaused, AnnoSuspended} {
			if _, ok := a[k]; ok {
				t.Errorf("after scale up annotation %s is left: %v", k, a)
			}
		}
	}
	// Scaling up again (a rerun) has nothing to change, so edit writes nothing.
	for _, w := range workloads {
		err := edit(ctx, e.cs, e.ns, w, func(o object) bool {
			if scaleUp(o) {
				t.Errorf("%s: a second scale up changes it again", w)
			}
			return false
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
