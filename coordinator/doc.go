// Package coordinator is the heart of a krsync run: it walks the source (through fpart),
// keeps every partition in a journal, hands partitions out as time-limited leases over the
// work-lease HTTP API (docs/api.md), re-issues leases that expire, and finishes with the
// directory-metadata partitions once every file partition is done.
//
// It deliberately does not copy anything, run rsync, or know about Kubernetes: workers do
// the copying through leaseapi, and the Kubernetes pod watcher only calls ReleaseWorker.
package coordinator
