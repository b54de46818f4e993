// Package rsyncexec runs one rsync over one partition: it validates the user's rsync options,
// builds the command line (the entries as arguments SOURCE/./NAME with --relative, or, when
// they do not fit, --files-from over the source root with every entry written "./NAME" so
// that none reads as a comment; never through a shell), runs rsync as a child process group
// that a context can stop, parses its --stats numbers and turns its exit status and stderr
// into an *ExitError that says whether a retry can help and which paths failed.
//
// It owns every path krsync itself touches below the source and the destination, and
// resolves them without following symlinks (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS):
// the entries left out as unchanged, the entries refused because a parent directory is a
// symlink (RefusedError), and krsync's temporary directory in the destination (Job.TempDir,
// RemoveTempDir), the only thing krsync creates or removes there by itself.
//
// It knows nothing of leases, partitions or the coordinator's API, and it does not walk trees or
// retry on its own: the caller (the worker) decides what to do with the result. It is Linux
// only (openat2, PR_SET_PDEATHSIG).
//
// run.go is one cohesive thing over 400 lines: one rsync process from start to exit (the
// child's lifetime, its stderr and --stats, the stop on cancel and the exit code's meaning).
// The command line is built in cmdline.go, the options' rules are args.go.
package rsyncexec
