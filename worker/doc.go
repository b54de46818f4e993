// Package worker is the lease loop of a krsync worker: it leases a partition from the
// coordinator, rsyncs it with rsyncexec, renews the lease while rsync runs, and reports the
// outcome, until the coordinator says all work is done.
//
// It deliberately knows nothing of how partitions are made or queued (that is the coordinator,
// reached only through leaseapi), nor of how rsync's command line is built (rsyncexec), nor of
// flags, processes or Kubernetes (cmd_worker.go and cmd_local.go wire it).
package worker
