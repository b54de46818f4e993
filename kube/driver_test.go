package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/util/retry"

	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// TestDriverCreatesJobSizedToTheWork: the worker Job starts with one worker per partition
// waiting (at least one), grows to --parallelism as partitions appear, never shrinks, and
// carries the owner, the claims and the coordinator's image.
func TestDriverCreatesJobSizedToTheWork(t *testing.T) {
	e := newEnv(t, envOptions{})
	fc := &fakeCoordinator{}
	e.runDriver(e.cs, e.options(3), fc)
	job := e.job()
	if got := *job.Spec.Parallelism; got != 1 {
		t.Errorf("initial parallelism %d with no partitions yet, want 1", got)
	}
	if job.Spec.Completions != nil {
		t.Errorf("completions %d, want none (work-queue Job)", *job.Spec.Completions)
	}
	refs := job.OwnerReferences
	if len(refs) != 1 || refs[0].Kind != "Pod" || refs[0].UID != e.self.UID {
		t.Errorf("owner references %+v, want the coordinator Pod %s", refs, e.self.UID)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.test/krsync:v9" || c.ImagePullPolicy != corev1.PullNever {
		t.Errorf("worker image %s %s, want the coordinator's", c.Image, c.ImagePullPolicy)
	}
	if a := job.Spec.Template.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		t.Errorf("ReadWriteMany claims, yet node affinity %+v", a.NodeAffinity)
	}

	for _, step := range []struct {
		pending, leased int64
		want            int32
	}{
		{pending: 1, want: 1},
		{pending: 1, leased: 1, want: 2},
		{pending: 10, leased: 2, want: 3}, // capped at --parallelism
		{pending: 0, leased: 1, want: 3},  // never lowered: that would kill running workers
	} {
		fc.setWork(step.pending, step.leased)
		e.eventually("parallelism is "+itoa(int(step.want)), func() bool {
			j, err := e.cs.BatchV1().Jobs(e.ns).Get(context.Background(), kube.WorkerJobName, metav1.GetOptions{})
			return err == nil && *j.Spec.Parallelism == step.want
		})
	}
	e.eventually("the Job controller made 3 worker Pods", func() bool { return len(e.workerPods()) == 3 })
}

// TestDeletingCoordinatorPodDeletesWorkerJob: the owner reference lets the garbage collector
// remove the worker Job (and its Pods) when the coordinator's Pod goes.
func TestDeletingCoordinatorPodDeletesWorkerJob(t *testing.T) {
	e := newEnv(t, envOptions{})
	fc := &fakeCoordinator{}
	fc.setWork(2, 0)
	_, done, result := e.runDriver(e.cs, e.options(2), fc)
	job := e.job()
	if err := e.cs.CoreV1().Pods(e.ns).Delete(context.Background(), e.self.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the garbage collector deleted the worker Job", func() bool {
		j, err := e.cs.BatchV1().Jobs(e.ns).Get(context.Background(), kube.WorkerJobName, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && j.UID != job.UID)
	})
	// A coordinator whose Job vanished while work remains says so instead of waiting forever.
	<-done
	if err := *result; err == nil || !strings.Contains(err.Error(), "deleted") {
		t.Errorf("driver: %v, want an error saying the worker Job was deleted", err)
	}
}

// TestReadWriteOnceClaimsPinWorkersToCoordinatorNode: with two Nodes, workers of RWO claims
// run only on the coordinator's node; other modes leave scheduling free; RWOP is refused.
func TestReadWriteOnceClaimsPinWorkersToCoordinatorNode(t *testing.T) {
	rwo := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	rox := []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}
	rwx := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	rwop := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}
	tests := []struct {
		name         string
		source, dest []corev1.PersistentVolumeAccessMode
		pinned       bool
		wantErr      string
	}{
		{name: "both RWO", source: rwo, dest: rwo, pinned: true},
		{name: "RWO dest only", source: rox, dest: rwo, pinned: true},
		{name: "ROX source, RWX dest", source: rox, dest: rwx},
		{name: "RWOP refused", source: rwop, dest: rwx, wantErr: "ReadWriteOncePod"},
	}
	plane := cluster.Require(t)
	cs, err := plane.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	nodeA, nodeB := kubeplane.UniqueName("node-a"), kubeplane.UniqueName("node-b")
	kubeplane.AddNode(t, cs, nodeA, nil)
	kubeplane.AddNode(t, cs, nodeB, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{sourceModes: tc.source, destModes: tc.dest, node: nodeA})
			if tc.wantErr != "" {
				_, err := kube.NewDriver(context.Background(), e.cs, "default", e.options(2), testLogger(t))
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewDriver: %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			fc := &fakeCoordinator{}
			fc.setWork(4, 0)
			e.runDriver(e.cs, e.options(4), fc)
			job := e.job()
			a := job.Spec.Template.Spec.Affinity
			hasPin := a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil
			if hasPin != tc.pinned {
				t.Fatalf("node affinity %+v, want pinned=%v", a, tc.pinned)
			}
			if !tc.pinned {
				return
			}
			e.eventually("4 worker Pods scheduled", func() bool {
				pods := e.workerPods()
				bound := 0
				for _, p := range pods {
					if p.Spec.NodeName != "" {
						bound++
					}
				}
				return bound == 4
			})
			for _, p := range e.workerPods() {
				if p.Spec.NodeName != nodeA {
					t.Errorf("worker Pod %s on %s, want the coordinator's node %s", p.Name, p.Spec.NodeName, nodeA)
				}
			}
		})
	}
}

// TestGoneWorkerPodsReleaseTheirLeases: a worker Pod deleted, failed or marked for eviction
// has its leases released at once.
func TestGoneWorkerPodsReleaseTheirLeases(t *testing.T) {
	e := newEnv(t, envOptions{})
	fc := &fakeCoordinator{}
	fc.setWork(3, 0)
	e.runDriver(e.cs, e.options(3), fc)
	e.job()
	var pods []corev1.Pod
	e.eventually("3 worker Pods", func() bool { pods = e.workerPods(); return len(pods) == 3 })
	ctx := context.Background()
	tests := []struct {
		name string
		do   func(p *corev1.Pod) error
	}{
		{"deleted", func(p *corev1.Pod) error {
			return e.cs.CoreV1().Pods(e.ns).Delete(ctx, p.Name, metav1.DeleteOptions{})
		}},
		{"failed", func(p *corev1.Pod) error {
			return e.updatePodStatus(p.Name, func(s *corev1.PodStatus) {
				s.Phase, s.Reason = corev1.PodFailed, "Error"
			})
		}},
		{"evicted", func(p *corev1.Pod) error {
			return e.updatePodStatus(p.Name, func(s *corev1.PodStatus) {
				s.Conditions = append(s.Conditions, corev1.PodCondition{
					Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI",
					LastTransitionTime: metav1.Now(),
				})
			})
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pods[i]
			if fc.wasReleased(p.Name) {
				t.Fatalf("%s released before anything happened to it", p.Name)
			}
			if err := tc.do(&p); err != nil {
				t.Fatal(err)
			}
			e.eventually(p.Name+" released", func() bool { return fc.wasReleased(p.Name) })
		})
	}
	e.eventually("a LeasesReleased Event", func() bool { return e.hasEvent("LeasesReleased") })
}

// TestFinishRecordsOutcomeAsEvents: Events on the worker Job tell how the run ended.
func TestFinishRecordsOutcomeAsEvents(t *testing.T) {
	tests := []struct {
		name   string
		status leaseapi.Status
		err    error
		reason string
	}{
		{"completed", leaseapi.Status{Partitions: leaseapi.PartitionCounts{Done: 7, Total: 7}, Finished: true}, nil, "Completed"},
		{"partitions failed", leaseapi.Status{
			Partitions: leaseapi.PartitionCounts{Done: 6, Failed: 1, Total: 7}, Finished: true,
			Failed: []leaseapi.FailedPartition{{Partition: 3, Attempts: 3, Error: "rsync exit 23"}},
		}, errors.New("1 partition failed"), "Failed"},
		{"interrupted", leaseapi.Status{}, context.Canceled, "Interrupted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			fc := &fakeCoordinator{}
			d, _, _ := e.runDriver(e.cs, e.options(2), fc)
			e.job()
			e.eventually("the driver knows its Job", func() bool { return d.WorkerJob().UID != "" })
			d.Finish(context.Background(), tc.status, nil, tc.err)
			e.eventually("a "+tc.reason+" Event", func() bool { return e.hasEvent(tc.reason) })
		})
	}
}

// TestDriverFailsWhenWorkerJobFails: a worker Job that failed (here: deleted) stops the
// coordinator with a clear error instead of a wait for workers that will never come.
func TestDriverFailsWhenWorkerJobIsDeleted(t *testing.T) {
	e := newEnv(t, envOptions{})
	fc := &fakeCoordinator{}
	_, done, result := e.runDriver(e.cs, e.options(1), fc)
	e.job()
	bg := metav1.DeletePropagationBackground
	if err := e.cs.BatchV1().Jobs(e.ns).Delete(context.Background(), kube.WorkerJobName, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := *result; err == nil || !strings.Contains(err.Error(), "deleted") {
		t.Errorf("driver: %v, want an error saying the worker Job was deleted", err)
	}
}

// TestDriverAdoptsRunningJobAndReplacesFinishedOne: a restarted coordinator Pod takes over
// the worker Job its predecessor left running, and replaces one that has finished.
func TestDriverAdoptsRunningJobAndReplacesFinishedOne(t *testing.T) {
	e := newEnv(t, envOptions{})
	fc := &fakeCoordinator{}
	d, err := kube.NewDriver(context.Background(), e.cs, "default", e.options(2), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	old := d.WorkerJob()
	old.OwnerReferences = nil
	old, err = e.cs.BatchV1().Jobs(e.ns).Create(context.Background(), old, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.runDriver(e.cs, e.options(2), fc)
	e.eventually("the running Job is adopted", func() bool {
		j, err := e.cs.BatchV1().Jobs(e.ns).Get(context.Background(), kube.WorkerJobName, metav1.GetOptions{})
		return err == nil && j.UID == old.UID && len(j.OwnerReferences) == 1 && j.OwnerReferences[0].UID == e.self.UID
	})
}

func (e *testEnv) hasEvent(reason string) bool {
	e.t.Helper()
	evs, err := e.cs.CoreV1().Events(e.ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": kube.WorkerJobName, "reason": reason}.String(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs.Items {
		if ev.InvolvedObject.Kind == "Job" {
			return true
		}
	}
	return false
}

// updatePodStatus changes a Pod's status as a kubelet would, retrying on conflicts with the
// Job controller, which updates the same Pods.
func (e *testEnv) updatePodStatus(name string, change func(*corev1.PodStatus)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(&p.Status)
		_, err = e.cs.CoreV1().Pods(e.ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
		return err
	})
}
