package kube

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// watchJob follows the worker Job (get and watch by name, which the Role limits itself to)
// and returns an error if it fails or is deleted while the coordinator still runs: without
// workers the coordinator would wait forever.
func (d *Driver) watchJob(ctx context.Context) error {
	name, uid := d.job.Name, d.job.UID
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.FieldSelector = sel
		return d.cs.BatchV1().Jobs(d.ns).Watch(ctx, o)
	}}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, d.job.ResourceVersion, lw)
	if err != nil {
		return fmt.Errorf("watch Job %s/%s: %w", d.ns, name, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.Done():
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch Job %s/%s: the watch ended (does the Role grant watch on jobs/%s?)", d.ns, name, name)
		case ev := <-w.ResultChan():
			switch ev.Type {
			case watch.Error:
				return fmt.Errorf("watch Job %s/%s: %w", d.ns, name, apierrors.FromObject(ev.Object))
			case watch.Deleted:
				return fmt.Errorf("the worker Job %s/%s was deleted while partitions remain", d.ns, name)
			case watch.Added, watch.Modified:
				job, ok := ev.Object.(*batchv1.Job)
				if !ok || job.UID != uid {
					continue
				}
				if cond, ok := jobEnd(job); ok && cond.Type == batchv1.JobFailed {
					return fmt.Errorf("the worker Job %s/%s failed: %s: %s", d.ns, name, cond.Reason, cond.Message)
				}
			}
		}
	}
}
