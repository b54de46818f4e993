// Package rsyncexec runs one rsync over one partition: it validates the user's rsync options,
// builds the command line (--files-from over the source root, never through a shell), runs rsync
// as a child process group that a context can stop, parses its --stats numbers and turns its exit
// status and stderr into an *ExitError that says whether a retry can help and which paths failed.
// It knows nothing of leases, partitions or the coordinator's API, and it does not walk trees or
// retry on its own: the caller (the worker) decides what to do with the result.
package rsyncexec
