// Package worker is the lease loop of a krsync worker: it leases a partition from the
// coordinator, rsyncs it with rsyncexec, renews the lease while rsync runs, and reports the
// outcome, until the coordinator says all work is done.
//
// Before its first rsync it checks that its source holds one of the names the coordinator saw
// at the top of the walked tree (a wrong mount stops it, exit 2 in the CLI), and it looks
// again when most of a partition's entries vanished: a source that still holds most of those
// names changed during the run (done, with a warning); otherwise it stops the same way. In the destination it
// creates and removes only the run's temporary directory named by the lease (rsyncexec does
// the work, without following symlinks); it never guesses at leftovers by their names.
//
// It deliberately knows nothing of how partitions are made or queued (that is the coordinator,
// reached only through leaseapi), nor of how rsync's command line is built (rsyncexec), nor of
// flags, processes or Kubernetes (cmd_worker.go and cmd_local.go wire it).
package worker
