package kube_test

import (
	"context"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/krsync/krsync/kube"
)

// checkRunNames asserts that every object, label, selector, Role resourceName and Secret or
// ConfigMap reference of m belongs to the run whose objects are named by want and labelled
// instance, so that another run in the namespace shares none of them.
func checkRunNames(t *testing.T, m *kube.Manifests, want kube.RunNames, instance string) {
	t.Helper()
	for _, o := range m.Objects {
		acc, err := meta.Accessor(o)
		if err != nil {
			t.Fatal(err)
		}
		if n := acc.GetName(); n != want.Coordinator && n != want.Worker && n != want.Token {
			t.Errorf("%T %s: not one of the run's names %+v", o, n, want)
		}
		if got := acc.GetLabels()[kube.InstanceLabel]; got != instance {
			t.Errorf("%T %s: label %s=%q, want %q", o, acc.GetName(), kube.InstanceLabel, got, instance)
		}
		switch o := o.(type) {
		case *corev1.Service:
			if o.Spec.Selector[kube.InstanceLabel] != instance {
				t.Errorf("Service selector %v does not select the run %q only", o.Spec.Selector, instance)
			}
		case *networkingv1.NetworkPolicy:
			sels := []map[string]string{o.Spec.PodSelector.MatchLabels}
			for _, in := range o.Spec.Ingress {
				for _, from := range in.From {
					if from.PodSelector != nil {
						sels = append(sels, from.PodSelector.MatchLabels)
					}
				}
			}
			for _, sel := range sels {
				if sel[kube.InstanceLabel] != instance {
					t.Errorf("NetworkPolicy selector %v does not select the run %q only", sel, instance)
				}
			}
		case *rbacv1.Role:
			for _, r := range o.Rules {
				for _, n := range r.ResourceNames {
					if n != want.Worker {
						t.Errorf("Role resourceNames %v, want the run's worker Job %s", r.ResourceNames, want.Worker)
					}
				}
			}
		case *rbacv1.RoleBinding:
			if o.RoleRef.Name != want.Coordinator || o.Subjects[0].Name != want.Coordinator {
				t.Errorf("RoleBinding %+v %+v, want the run's Role and ServiceAccount %s", o.RoleRef, o.Subjects, want.Coordinator)
			}
		}
	}
	spec := m.Coordinator.Spec.Template.Spec
	if spec.ServiceAccountName != want.Coordinator {
		t.Errorf("coordinator serviceAccountName %s, want %s", spec.ServiceAccountName, want.Coordinator)
	}
	if m.Coordinator.Spec.Template.Labels[kube.InstanceLabel] != instance {
		t.Errorf("coordinator Pod labels %v, want instance %s", m.Coordinator.Spec.Template.Labels, instance)
	}
	for _, e := range spec.Containers[0].Env {
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Name != want.Token {
			t.Errorf("coordinator %s from Secret %s, want %s", e.Name, r.SecretKeyRef.Name, want.Token)
		}
	}
	for _, v := range spec.Volumes {
		if v.Name == kube.WorkerTemplateVolume && (v.ConfigMap == nil || v.ConfigMap.Name != want.Worker) {
			t.Errorf("coordinator volume %s: %+v, want ConfigMap %s", v.Name, v.VolumeSource, want.Worker)
		}
	}
	// The template names nothing of a run: the coordinator fills in the run's names.
	w := m.WorkerJob
	if w.Name != "" || w.Labels[kube.InstanceLabel] != "" || w.Spec.Template.Labels[kube.InstanceLabel] != "" {
		t.Errorf("the worker template names a run (%q, labels %v): the coordinator's would not win", w.Name, w.Spec.Template.Labels)
	}
	for _, e := range w.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "KRSYNC_COORDINATOR" || e.Name == "KRSYNC_TOKEN" {
			t.Errorf("the worker template sets %s itself: it would not follow the run's names", e.Name)
		}
	}
}

// TestRunNameNamesEveryObject: `krsync manifests --name nightly` names every object of the run
// after it and puts it in every label and selector; no default name is left anywhere.
func TestRunNameNamesEveryObject(t *testing.T) {
	p := kube.DefaultParams()
	p.Name = "nightly"
	files, err := kube.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	stream := kube.Stream(files)
	for _, def := range []string{kube.CoordinatorName, kube.WorkerJobName, kube.TokenSecretName, "instance: krsync"} {
		if strings.Contains(string(stream), def) {
			t.Errorf("the manifests of run nightly still say %q", def)
		}
	}
	objs, err := kube.Decode(stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := kube.ParseManifests(objs)
	if err != nil {
		t.Fatal(err)
	}
	checkRunNames(t, m, kube.NamesFor("nightly"), "nightly")
}

// TestNamePrefixOverlayNamesEveryObject: the same with kustomize (examples/second-run):
// namePrefix renames the objects and their references, the Role's resourceNames included.
func TestNamePrefixOverlayNamesEveryObject(t *testing.T) {
	m := kustomize(t, "../examples/second-run")
	checkRunNames(t, m, kube.NamesFor("nightly-"+kube.DefaultRunName), "nightly")
}

// TestWorkerJobFollowsTheRun: the worker Job of a renamed run (kustomize's namePrefix, which
// cannot reach into the template) takes its name from the template's ConfigMap, the run's
// labels from the coordinator's Pod, the coordinator's Service from its Job's name and the
// token from the coordinator's Secret reference.
func TestWorkerJobFollowsTheRun(t *testing.T) {
	m := kustomize(t, "../examples/second-run")
	names := kube.NamesFor("nightly-" + kube.DefaultRunName)
	spec := *m.Coordinator.Spec.Template.Spec.DeepCopy()
	spec.ServiceAccountName = "" // not applied here; the Pod is never run
	spec.Volumes[0].PersistentVolumeClaim.ClaimName = "source-pvc"
	spec.Volumes[1].PersistentVolumeClaim.ClaimName = "dest-pvc"
	labels := map[string]string{batchv1.JobNameLabel: names.Coordinator, batchv1.ControllerUidLabel: "x"}
	for k, v := range m.Coordinator.Spec.Template.Labels {
		labels[k] = v
	}
	e := newEnv(t, envOptions{selfSpec: &spec, selfLabels: labels})
	d, err := kube.NewDriver(context.Background(), e.cs, "default", e.options(2), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	job := d.WorkerJob()
	if job.Name != names.Worker {
		t.Errorf("worker Job %s, want %s (the ConfigMap's name, which the Role grants)", job.Name, names.Worker)
	}
	for _, l := range []map[string]string{job.Labels, job.Spec.Template.Labels} {
		if l[kube.InstanceLabel] != "nightly" || l[kube.ComponentLabel] != "worker" || l[batchv1.JobNameLabel] != "" || l[batchv1.ControllerUidLabel] != "" {
			t.Errorf("worker labels %v, want the run's, component worker, none of the coordinator Job's", l)
		}
	}
	env := map[string]corev1.EnvVar{}
	for _, v := range job.Spec.Template.Spec.Containers[0].Env {
		env[v.Name] = v
	}
	if got := env["KRSYNC_COORDINATOR"].Value; got != "http://"+names.Coordinator+":8080" {
		t.Errorf("KRSYNC_COORDINATOR=%q, want the run's Service", got)
	}
	if ref := env["KRSYNC_TOKEN"].ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != names.Token {
		t.Errorf("KRSYNC_TOKEN %+v, want Secret %s", env["KRSYNC_TOKEN"], names.Token)
	}
}
