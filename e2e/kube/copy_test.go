package kubee2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/krsync/krsync/internal/testing/treegen"
)

// jobTimeout bounds one copy on a shared 2-core machine; a hang fails the test, never the suite.
const jobTimeout = 4 * time.Minute

// TestApplyManifestsCopiesHostileTree: `krsync manifests` applied as is copies a hostile tree
// from the source claim to the destination claim; both Jobs end Complete, the destination
// equals the source, the read-only source is untouched, and Events tell the outcome.
func TestApplyManifestsCopiesHostileTree(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 5, Files: 400, Hostile: true})
	before := c.scanSource()
	c.apply(c.render("--parallelism", "3"))

	if got, job := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %s (%+v), want Complete; termination message: %s", got, job.Status, c.terminationMessages(coordinatorJob))
	}
	if got, _ := c.waitJob(workerJob, time.Minute); got != batchv1.JobComplete {
		t.Errorf("worker Job ended %s, want Complete", got)
	}
	c.destEqualsSource()
	c.sourceUnchanged(before)

	if msg := c.terminationMessages(coordinatorJob); msg == "" {
		t.Errorf("the coordinator left no termination message")
	}
	var outcome *corev1.Event
	for _, e := range c.events() {
		if e.InvolvedObject.Kind == "Job" && e.InvolvedObject.Name == workerJob && e.Reason == "Completed" {
			outcome = &e
		}
	}
	if outcome == nil || outcome.Type != corev1.EventTypeNormal || outcome.Message == "" {
		t.Errorf("want a Normal Event Completed on Job %s telling the outcome, got %+v", workerJob, outcome)
	} else {
		t.Logf("outcome Event: %s", outcome.Message)
	}
	for _, p := range c.pods(workerJob) {
		if p.Status.Phase != corev1.PodSucceeded {
			t.Errorf("worker pod %s ended %s, want Succeeded", p.Name, p.Status.Phase)
		}
	}
}

// TestLiveModeUnknownPartitionCount: small live partitions (-L -f 20) are handed out while the
// coordinator still walks, so nobody knows their number in advance; the work-queue worker Job
// (no completions) still runs to Complete and the copy is whole.
func TestLiveModeUnknownPartitionCount(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 11, Files: 900, FanOut: 3})
	before := c.scanSource()
	c.apply(c.render("--parallelism", "3", "--fpart-opts", "-zz -L -f 20"))

	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %s, want Complete; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	got, job := c.waitJob(workerJob, time.Minute)
	if got != batchv1.JobComplete {
		t.Errorf("worker Job ended %s, want Complete", got)
	}
	if job.Spec.Completions != nil {
		t.Errorf("worker Job has completions %d: the work-queue pattern has none", *job.Spec.Completions)
	}
	c.destEqualsSource()
	c.sourceUnchanged(before)
	t.Logf("coordinator: %s", c.terminationMessages(coordinatorJob))
}

// TestReadWriteOnceSourcePinsWorkersToCoordinatorNode: with ReadWriteOnce claims and two
// Nodes, every worker Pod runs on the coordinator's Node, where the volumes can be mounted.
func TestReadWriteOnceSourcePinsWorkersToCoordinatorNode(t *testing.T) {
	c := newCluster(t, clusterOptions{nodes: 2, access: corev1.ReadWriteOnce})
	c.generate(treegen.Spec{Seed: 7, Files: 300})
	c.apply(c.render("--parallelism", "4", "--fpart-opts", "-zz -L -f 25"))

	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %s, want Complete; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	got, job := c.waitJob(workerJob, time.Minute)
	if got != batchv1.JobComplete {
		t.Errorf("worker Job ended %s, want Complete", got)
	}
	coordinators := c.pods(coordinatorJob)
	if len(coordinators) != 1 {
		t.Fatalf("want one coordinator pod, got %d", len(coordinators))
	}
	node := coordinators[0].Spec.NodeName
	// The pinning is in the Job, not luck of the scheduler: its Pods must ask for the node.
	pin, err := json.Marshal([]any{job.Spec.Template.Spec.NodeSelector, job.Spec.Template.Spec.Affinity})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(pin), strconv.Quote(node)) {
		t.Errorf("worker Job template does not pin its pods to node %s: nodeSelector and affinity %s", node, pin)
	}
	workers := c.pods(workerJob)
	if len(workers) == 0 {
		t.Fatal("no worker pods")
	}
	for _, p := range workers {
		if p.Spec.NodeName != node {
			t.Errorf("worker pod %s ran on node %s, want the coordinator's node %s (ReadWriteOnce)", p.Name, p.Spec.NodeName, node)
		}
	}
	c.destEqualsSource()
}
