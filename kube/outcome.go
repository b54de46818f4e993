package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krsync/krsync/leaseapi"
)

// eventSource names krsync in the Events it writes.
const eventSource = "krsync-coordinator"

// maxTerminationMessage is the kubelet's limit for a container's termination message.
const maxTerminationMessage = 4096

// event records a Kubernetes Event on the worker Job. Events are best effort: a failure is
// logged, never fatal.
func (d *Driver) event(ctx context.Context, eventType, reason, message string) {
	if d.job == nil {
		return
	}
	if err := d.writeEvent(ctx, eventType, reason, message); err != nil {
		d.log.Warn().Err(err).Str("reason", reason).Msg("could not record an Event on the worker Job")
	}
}

func (d *Driver) writeEvent(ctx context.Context, eventType, reason, message string) error {
	now := metav1.NewTime(time.Now())
	host := d.opts.NodeName
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: d.job.Name + ".", Namespace: d.ns},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "batch/v1", Kind: "Job", Namespace: d.ns, Name: d.job.Name, UID: d.job.UID,
		},
		Reason:         reason,
		Message:        message,
		Type:           eventType,
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
		Source:         corev1.EventSource{Component: eventSource, Host: host},
	}
	if _, err := d.cs.CoreV1().Events(d.ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Event %s on Job %s/%s: %w", reason, d.ns, d.job.Name, err)
	}
	return nil
}

// Summary is the one-line outcome of a run, for logs, Events and the termination message;
// verify is the comparison after the copy (--verify), nil when none ran.
func Summary(st leaseapi.Status, verify *leaseapi.VerifyRecord, runErr error) string {
	tail := st.Summary()
	if verify != nil {
		tail += "; verify: " + verify.Summary()
	}
	if runErr != nil {
		return "krsync failed: " + leaseapi.OneLine(runErr.Error()) + "; " + tail
	}
	return "krsync done: " + tail
}

// Finish records the outcome as an Event on the worker Job: Normal "Completed" or Warning
// "Failed" (with the failed partitions, or the differences --verify found: runErr).
func (d *Driver) Finish(ctx context.Context, st leaseapi.Status, verify *leaseapi.VerifyRecord, runErr error) {
	if errors.Is(runErr, context.Canceled) {
		d.event(ctx, corev1.EventTypeWarning, "Interrupted",
			"the coordinator was stopped (SIGTERM); restarted on the same state directory it resumes; "+Summary(st, verify, nil))
		return
	}
	if runErr == nil && st.Partitions.Failed == 0 {
		d.event(ctx, corev1.EventTypeNormal, "Completed", Summary(st, verify, nil))
		return
	}
	msg := Summary(st, verify, runErr)
	for i, f := range st.Failed {
		if i == 5 {
			msg += fmt.Sprintf("; and %d more failed partitions", len(st.Failed)-i)
			break
		}
		msg += fmt.Sprintf("; partition %d failed after %d attempts: %s", f.Partition, f.Attempts, leaseapi.OneLine(f.Error))
	}
	d.event(ctx, corev1.EventTypeWarning, "Failed", msg)
}

// Warn records a Warning Event on the worker Job (e.g. the published default token in use).
func (d *Driver) Warn(ctx context.Context, reason, message string) {
	d.event(ctx, corev1.EventTypeWarning, reason, message)
}

// WriteTerminationMessage writes msg to path (the container's terminationMessagePath), cut
// to the kubelet's 4096 bytes, so `kubectl describe pod` and the Job show the outcome.
func WriteTerminationMessage(path, msg string) error {
	if len(msg) > maxTerminationMessage {
		msg = msg[:maxTerminationMessage-3] + "..."
	}
	if err := os.WriteFile(path, []byte(msg), 0o644); err != nil {
		return fmt.Errorf("termination message: %w", err)
	}
	return nil
}
