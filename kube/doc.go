// Package kube is krsync's Kubernetes side, and the only package that imports client-go: it
// renders the manifests (`krsync manifests`), decodes them strictly, and drives the worker Job
// for a coordinator running in a Pod (--create-workers): it creates the Job from its template,
// owned by the coordinator's Pod and pinned to its node for ReadWriteOnce volumes, raises its
// parallelism as partitions appear, releases the leases of worker Pods that are deleted,
// evicted or failed, and records the outcome as Events and a termination message. It also
// reads a coordinator's status through the API server's service proxy (`krsync status -n`).
//
// It does not know how partitions are made or copied: it talks to the coordinator through a
// two-method interface (Coordinator) and to the user through the Options flags.
package kube
