// Package migrate moves an application's data from one PersistentVolumeClaim to another
// (krsync migrate): it finds the workloads whose Pods mount the old claim, creates the new
// one when asked, copies while the application runs (the old claim read-only), scales the
// workloads to zero, makes the last --mirror pass with --verify, points the workloads at the
// new claim and scales them back, measuring the downtime. Its state lives in annotations on
// the new claim and on the workloads, so a run that was interrupted resumes when run again,
// and --rollback puts the workloads back on the old claim. The old claim is never deleted.
//
// It does not copy by itself: the copies are the coordinator and worker Jobs of `krsync
// manifests`, run through kube.Copier. It drives Deployments, StatefulSets, DaemonSets,
// CronJobs and Pods without a controller (deleted and created again from a record); another
// controller, or a StatefulSet's volumeClaimTemplate, stops the plan with what the operator
// must do instead.
package migrate
