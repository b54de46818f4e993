package kubee2e

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/leaseapi"
)

// longTTL is far beyond jobTimeout: a copy that finishes proves a lease was handed back at
// once, not when it expired.
const longTTL = "30m"

// slowRsync keeps each partition in flight for seconds, so a test can interrupt one.
const slowRsync = "--archive --numeric-ids --hard-links --bwlimit=3m"

// TestDeletedWorkerPodReleasesLeaseAtOnce: a worker Pod deleted in the middle of a partition
// (grace 0: killed before it can hand the lease back itself) has its lease released by the
// coordinator's pod watcher, the Job replaces the Pod, and the copy completes long before the
// lease TTL.
func TestDeletedWorkerPodReleasesLeaseAtOnce(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	// Only big files, each its own partition, each seconds long under --bwlimit: whenever the
	// single worker has finished one partition and holds a lease, it is in the middle of one.
	c.generate(treegen.Spec{Seed: 3, BigFiles: 4, BigSize: 6 << 20})
	before := c.scanSource()
	c.apply(c.render("--parallelism", "1", "--fpart-opts", "-zz -L -f 1", "--rsync-opts", slowRsync),
		coordinatorEnv("KRSYNC_LEASE_TTL", longTTL))

	client := c.coordinatorClient()
	var victim corev1.Pod
	var held leaseapi.Status
	c.waitFor("the worker to be copying its second partition", 2*time.Minute, func() (bool, error) {
		st, err := client.Status(context.Background())
		if err != nil || st.Partitions.Leased != 1 || st.Partitions.Done < 1 {
			return false, nil
		}
		for _, p := range c.pods(workerJob) {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				victim, held = p, st
				return true, nil
			}
		}
		return false, nil
	})
	t.Logf("deleting worker pod %s with grace 0 while it copies (partitions %+v)", victim.Name, held.Partitions)
	if err := c.cs.CoreV1().Pods(c.ns).Delete(context.Background(), victim.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	// The Job controller waits (its failure backoff) before it replaces the pod, so the
	// status has a window with no lease held; without the release it would last the TTL.
	released := false
	deadline := time.Now().Add(time.Minute)
	for !released && time.Now().Before(deadline) {
		st, err := client.Status(context.Background())
		released = err == nil && st.Partitions.Leased == 0 && st.Partitions.Pending > 0
		if !released {
			time.Sleep(20 * time.Millisecond) // polling the coordinator's status
		}
	}
	if !released {
		t.Errorf("the coordinator's status never showed the deleted pod's partition pending again (before: %+v)", held.Partitions)
	}
	var ev *corev1.Event
	c.waitFor("an Event on the worker Job saying the deleted pod's lease was released", time.Minute, func() (bool, error) {
		ev = c.releasedEvent(victim.Name)
		return ev != nil, nil
	})
	t.Logf("Event %s: %s", ev.Reason, ev.Message)

	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %s, want Complete (a lease held until its %s TTL would hang it); termination message: %s",
			got, longTTL, c.terminationMessages(coordinatorJob))
	}
	if got, _ := c.waitJob(workerJob, time.Minute); got != batchv1.JobComplete {
		t.Errorf("worker Job ended %s, want Complete", got)
	}
	c.destEqualsSource()
	c.sourceUnchanged(before)
}

// releasedEvent finds the Event in which the coordinator says it handed back pod's leases.
func (c *testCluster) releasedEvent(pod string) *corev1.Event {
	for _, e := range c.events() {
		if e.InvolvedObject.Kind == "Job" && e.InvolvedObject.Name == workerJob && strings.Contains(e.Message, pod) && strings.Contains(e.Message, "lease") {
			return &e
		}
	}
	return nil
}

// TestDeletedCoordinatorPodGarbageCollectsWorkerJob: the worker Job is owned by the
// coordinator's Pod, so deleting that Pod makes the garbage collector remove the Job; the
// coordinator Job's next Pod then resumes and completes the copy.
func TestDeletedCoordinatorPodGarbageCollectsWorkerJob(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 4, Files: 40, BigFiles: 6, BigSize: 6 << 20})
	before := c.scanSource()
	c.apply(c.render("--parallelism", "2", "--fpart-opts", "-zz -L -f 1", "--rsync-opts", slowRsync))

	var job *batchv1.Job
	c.waitFor("the coordinator to create the worker Job", 2*time.Minute, func() (bool, error) {
		j, err := c.cs.BatchV1().Jobs(c.ns).Get(context.Background(), workerJob, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		job = j
		return err == nil, err
	})
	coordinators := c.pods(coordinatorJob)
	if len(coordinators) != 1 {
		t.Fatalf("want one coordinator pod, got %d", len(coordinators))
	}
	owner := coordinators[0]
	owned := false
	for _, ref := range job.OwnerReferences {
		owned = owned || (ref.Kind == "Pod" && ref.UID == owner.UID)
	}
	if !owned {
		t.Fatalf("worker Job owner references %+v do not name the coordinator pod %s", job.OwnerReferences, owner.Name)
	}
	// Grace 0: the coordinator is killed before it could clean up, so only the garbage
	// collector, following the owner reference, can remove the Job.
	if err := c.cs.CoreV1().Pods(c.ns).Delete(context.Background(), owner.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the garbage collector to remove the worker Job of the deleted coordinator", 2*time.Minute, func() (bool, error) {
		j, err := c.cs.BatchV1().Jobs(c.ns).Get(context.Background(), workerJob, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && j.UID != job.UID, err
	})
	c.waitFor("the worker pods of the removed Job to go", 2*time.Minute, func() (bool, error) {
		for _, p := range c.pods(workerJob) {
			for _, ref := range p.OwnerReferences {
				if ref.UID == job.UID {
					return false, nil
				}
			}
		}
		return true, nil
	})

	// The coordinator Job starts a new coordinator (backoffLimit), which resumes from its
	// journal on the destination and finishes the copy with a worker Job of its own.
	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %s after its pod was deleted, want Complete (a new pod resumes); termination message: %s",
			got, c.terminationMessages(coordinatorJob))
	}
	c.destEqualsSource()
	c.sourceUnchanged(before)
}

// TestRoleMissingVerbFailsClearly: a Role without one verb the coordinator needs makes the
// coordinator fail at once with a "forbidden" message naming the verb, not hang.
func TestRoleMissingVerbFailsClearly(t *testing.T) {
	tests := []struct {
		resource, verb string
		want           string
	}{
		{"pods", "watch", "watch pods"},
		{"jobs", "create", "create jobs"},
		{"persistentvolumeclaims", "get", "get persistentvolumeclaims"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			c := newCluster(t, clusterOptions{})
			c.generate(treegen.Spec{Seed: 1, Files: 20})
			c.apply(c.render(), withoutVerb(tc.resource, tc.verb))

			got, _ := c.waitJob(coordinatorJob, 2*time.Minute)
			if got != batchv1.JobFailed {
				t.Fatalf("coordinator Job ended %s, want Failed", got)
			}
			msg := c.terminationMessages(coordinatorJob)
			if !strings.Contains(msg, "forbidden") || !strings.Contains(msg, tc.want) {
				t.Errorf("termination message %q: want \"forbidden\" and %q", msg, tc.want)
			}
			if _, err := c.cs.BatchV1().Jobs(c.ns).Get(context.Background(), workerJob, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("a worker Job exists (err %v): the coordinator should stop before creating it", err)
			}
		})
	}
}
