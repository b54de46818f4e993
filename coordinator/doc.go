// Package coordinator is the heart of a krsync run: it walks the source (through fpart),
// keeps every partition in a journal, hands partitions out as time-limited leases over the
// work-lease HTTP API (docs/api.md), re-issues leases that expire, and finishes with the
// directory-metadata partitions once every file partition is done.
//
// It deliberately does not copy anything, run rsync, or know about Kubernetes: workers do
// the copying through leaseapi, and the Kubernetes pod watcher only calls ReleaseWorker.
//
// One job per file: config.go (Config, its defaults, New's checks); coordinator.go (the run's
// lifecycle: journal opened and forgotten, the server started and stopped, the outcome);
// walk.go (the walk pipeline: fpart into the journal in group commits, then the
// directory-metadata pass); lease.go (the lease state machine, one cohesive thing: the
// ledger, through which every state change of a partition goes with its journal record, log
// line and metrics, and the in-memory queue and counters behind it); server.go (HTTP
// transport of it: decode, call the ledger, encode, status codes);
// journal.go (the bbolt journal, one cohesive thing: its format, reads, writes and the
// guards against a corrupt file); names.go (the run's own names: temp dir, state dir rules).
package coordinator
