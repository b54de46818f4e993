package migrate

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/krsync/krsync/internal/testing/kubeplane"
)

const (
	oldClaim = "old"
	newClaim = "new"
)

// env is one namespace on the shared control plane. No kubelet runs here: the plan reads
// objects only, and the controllers' Pods stay Pending, which is enough.
type env struct {
	t  *testing.T
	cs kubernetes.Interface
	ns string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	plane := cluster.Require(t)
	cs, err := plane.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, cs: cs, ns: kubeplane.Namespace(t, cs)}
}

func (e *env) claim(name, size string, modes ...corev1.PersistentVolumeAccessMode) {
	e.t.Helper()
	_, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Create(context.Background(), &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: modes, StorageClassName: ptr.To("none"),
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func podSpec(claim string) corev1.PodSpec {
	return corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "app"}},
		Volumes: []corev1.Volume{
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
		},
	}
}

func template(name, claim string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: podSpec(claim)}
}

func selector(name string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
}

func (e *env) deployment(name, claim string, replicas int32) {
	e.t.Helper()
	_, err := e.cs.AppsV1().Deployments(e.ns).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas, Selector: selector(name), Template: template(name, claim)},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) statefulSet(name, claim string, replicas int32, claimTemplate string) {
	e.t.Helper()
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       appsv1.StatefulSetSpec{Replicas: &replicas, Selector: selector(name), Template: template(name, claim), ServiceName: name},
	}
	if claimTemplate != "" {
		s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
			ObjectMeta: metav1.ObjectMeta{Name: claimTemplate},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		}}
		s.Spec.Template.Spec.Volumes = s.Spec.Template.Spec.Volumes[:1]
		s.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: claimTemplate, MountPath: "/data"}}
	}
	if _, err := e.cs.AppsV1().StatefulSets(e.ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) daemonSet(name, claim string) {
	e.t.Helper()
	_, err := e.cs.AppsV1().DaemonSets(e.ns).Create(context.Background(), &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       appsv1.DaemonSetSpec{Selector: selector(name), Template: template(name, claim)},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) cronJob(name, claim string) {
	e.t.Helper()
	tmpl := template(name, claim)
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	_, err := e.cs.BatchV1().CronJobs(e.ns).Create(context.Background(), &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) pod(name, claim string, controller *metav1.OwnerReference) {
	e.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: podSpec(claim)}
	if controller != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*controller}
	}
	_, err := e.cs.CoreV1().Pods(e.ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) config() Config {
	return Config{Namespace: e.ns, SourcePVC: oldClaim, DestPVC: newClaim, Timeout: time.Minute}
}

// TestMakePlan: the plan finds the workloads of every kind whose Pod template mounts the old
// claim (and only those), checks the new claim or describes the one to create, and refuses,
// with what to do, what it cannot move.
func TestMakePlan(t *testing.T) {
	rwo := corev1.ReadWriteOnce
	tests := []struct {
		name      string
		setup     func(e *env)
		config    func(c *Config)
		workloads []Workload
		replicas  map[Workload]int32
		create    string // the new claim's size when the plan creates it
		err       string // a part of the one-line error
		printed   []string
	}{
		{
			name: "every kind of workload",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", rwo)
				e.claim(newClaim, "5Gi", rwo)
				e.claim("other", "1Gi", rwo)
				e.deployment("web", oldClaim, 3)
				e.statefulSet("db", oldClaim, 1, "")
				e.daemonSet("agent", oldClaim)
				e.cronJob("nightly", oldClaim)
				e.deployment("elsewhere", "other", 2)
			},
			workloads: []Workload{{"Deployment", "web"}, {"StatefulSet", "db"}, {"DaemonSet", "agent"}, {"CronJob", "nightly"}},
			replicas:  map[Workload]int32{{"Deployment", "web"}: 3, {"StatefulSet", "db"}: 1},
			printed: []string{"Deployment/web: scale 3 -> 0", "StatefulSet/db: scale 1 -> 0", "DaemonSet/agent: pause",
				"CronJob/nightly: suspend", "claim new exists: 5Gi, ReadWriteOnce", "warm copy while the application runs"},
		},
		{
			name: "a Pod without a controller",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", rwo)
				e.claim(newClaim, "5Gi", rwo)
				e.pod("lonely", oldClaim, nil)
			},
			workloads: []Workload{{"Pod", "lonely"}},
			printed:   []string{"Pod/lonely (no controller): record it on new, delete it, create it again on new"},
		},
		{
			name: "a Pod of a controller krsync does not drive",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", rwo)
				e.claim(newClaim, "5Gi", rwo)
				owner, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "operator"}}, metav1.CreateOptions{})
				if err != nil {
					e.t.Fatal(err)
				}
				e.pod("managed", oldClaim, &metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)})
			},
			err: "Pod managed mounts old and its controller ConfigMap operator is not a Deployment",
		},
		{
			name: "the new claim in use",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", rwo)
				e.claim(newClaim, "5Gi", rwo)
				e.pod("squatter", newClaim, nil)
			},
			err: "Pod squatter mounts the destination claim new",
		},
		{
			name: "a claim of a volumeClaimTemplate",
			setup: func(e *env) {
				e.claim("data-db-0", "5Gi", rwo)
				e.claim(newClaim, "5Gi", rwo)
				e.statefulSet("db", "", 1, "data")
			},
			config: func(c *Config) { c.SourcePVC = "data-db-0" },
			err:    "--cascade=orphan",
		},
		{
			name:  "no new claim and no storage class",
			setup: func(e *env) { e.claim(oldClaim, "5Gi", rwo) },
			err:   "claim new not found",
		},
		{
			name:  "no old claim",
			setup: func(e *env) {},
			err:   "claim old not found",
		},
		{
			name: "a smaller new claim",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", rwo)
				e.claim(newClaim, "1Gi", rwo)
			},
			err: "smaller than old's 5Gi",
		},
		{
			name:    "created in a storage class with the old size",
			setup:   func(e *env) { e.claim(oldClaim, "5Gi", rwo) },
			config:  func(c *Config) { c.DestStorageClass = "fast" },
			create:  "5Gi",
			printed: []string{"create claim new: storage class fast, 5Gi, ReadWriteOnce", "no workload mounts old"},
		},
		{
			name:   "created larger",
			setup:  func(e *env) { e.claim(oldClaim, "5Gi", rwo) },
			config: func(c *Config) { c.DestStorageClass = "fast"; c.DestSize = ptr.To(resource.MustParse("20Gi")) },
			create: "20Gi",
		},
		{
			name:   "created smaller",
			setup:  func(e *env) { e.claim(oldClaim, "5Gi", rwo) },
			config: func(c *Config) { c.DestStorageClass = "fast"; c.DestSize = ptr.To(resource.MustParse("1Gi")) },
			err:    "--dest-size 1Gi is smaller than old's 5Gi",
		},
		{
			name: "ReadWriteOncePod: no warm copy",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", corev1.ReadWriteOncePod)
				e.claim(newClaim, "5Gi", corev1.ReadWriteOncePod)
			},
			printed: []string{"no warm copy: the source is ReadWriteOncePod"},
		},
		{
			name: "an existing new claim must be empty",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", rwo)
				e.claim(newClaim, "5Gi", rwo)
			},
			printed: []string{"claim new exists: 5Gi, ReadWriteOnce (it becomes an exact copy of old; the copy starts only if it is empty: --overwrite-dest"},
		},
		{
			name: "--overwrite-dest",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", rwo)
				e.claim(newClaim, "5Gi", rwo)
			},
			config:  func(c *Config) { c.OverwriteDest = true },
			printed: []string{"what else it holds is deleted; --overwrite-dest)"},
		},
		{
			name: "migrating back to the claim migrated from",
			setup: func(e *env) {
				e.claim(oldClaim, "5Gi", rwo)
				e.claim(newClaim, "5Gi", rwo)
				// old was itself migrated, done, from new: new holds an older copy of it.
				pvc, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(context.Background(), oldClaim, metav1.GetOptions{})
				if err != nil {
					e.t.Fatal(err)
				}
				pvc.Annotations = map[string]string{AnnoSource: newClaim, AnnoPhase: string(Done), AnnoWorkloads: "[]"}
				if _, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Update(context.Background(), pvc, metav1.UpdateOptions{}); err != nil {
					e.t.Fatal(err)
				}
			},
			printed: []string{"what else it holds is deleted; it is the claim old was migrated from)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e)
			cfg := e.config()
			if tc.config != nil {
				tc.config(&cfg)
			}
			plan, err := MakePlan(context.Background(), e.cs, cfg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("MakePlan: error %v, want one line holding %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.workloads) > 0 || plan.Workloads != nil {
				if got, want := plan.Workloads, tc.workloads; !equalWorkloads(got, want) {
					t.Errorf("workloads %v, want %v", got, want)
				}
			}
			for w, n := range tc.replicas {
				if plan.Replicas[w] != n {
					t.Errorf("%s: replicas %d, want %d", w, plan.Replicas[w], n)
				}
			}
			if plan.CreateDest != (tc.create != "") {
				t.Errorf("CreateDest %v, want %v", plan.CreateDest, tc.create != "")
			}
			if tc.create != "" {
				got := plan.Dest.Spec.Resources.Requests[corev1.ResourceStorage]
				if got.Cmp(resource.MustParse(tc.create)) != 0 || plan.Dest.Spec.AccessModes[0] != rwo || *plan.Dest.Spec.StorageClassName != cfg.DestStorageClass {
					t.Errorf("the claim to create: %s %v class %s; want %s ReadWriteOnce class %s", got.String(), plan.Dest.Spec.AccessModes, *plan.Dest.Spec.StorageClassName, tc.create, cfg.DestStorageClass)
				}
			}
			var out bytes.Buffer
			plan.Print(&out)
			for _, want := range tc.printed {
				if !strings.Contains(out.String(), want) {
					t.Errorf("the printed plan does not say %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func equalWorkloads(a, b []Workload) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDryRunChangesNothing: Run with dryRun prints the plan and creates no claim, records no
// state and scales nothing.
func TestDryRunChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.claim(oldClaim, "5Gi", corev1.ReadWriteOnce)
	e.deployment("web", oldClaim, 2)
	cfg := e.config()
	cfg.DestStorageClass = "fast"
	var out bytes.Buffer
	ctx := context.Background()
	if err := Run(ctx, Env{CS: e.cs, Out: &out}, cfg, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "create claim new") {
		t.Errorf("the dry run does not print the plan:\n%s", out.String())
	}
	if _, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Get(ctx, newClaim, metav1.GetOptions{}); err == nil {
		t.Errorf("the dry run created claim %s", newClaim)
	}
	d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 || d.Annotations[AnnoReplicas] != "" {
		t.Errorf("the dry run touched the Deployment: %d replicas, annotations %v", *d.Spec.Replicas, d.Annotations)
	}
}
