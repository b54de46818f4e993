package rsyncexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// DefaultKillGrace is how long a cancelled rsync gets between SIGTERM and SIGKILL.
const DefaultKillGrace = 5 * time.Second

// ErrBadList is wrapped by Run's error when the job's list holds a path that could leave the
// source or destination (absolute, or with a ".." component).
var ErrBadList = errors.New("bad partition list")

// ErrBadJob is wrapped by Run's error when the job lacks its source or destination.
var ErrBadJob = errors.New("bad rsync job")

// Job is one rsync run over one partition.
type Job struct {
	// Binary is the rsync program; "" looks up "rsync" in PATH.
	Binary string
	// Args are the user's rsync options (already validated by ParseArgs); nil means DefaultArgs.
	Args []string
	// Source and Dest are the root directories; List's paths are relative to Source.
	Source, Dest string
	// List holds the paths, each terminated by a NUL byte (rsync --from0); any bytes but NUL.
	List []byte
	// Dirs makes this the directory-metadata pass: List holds directories only, and each one's
	// mode, owner, group and mtime are set to the source's without copying what is inside.
	Dirs bool
	// TempDir names, directly below Dest, the run's temporary directories (one plain name,
	// e.g. ".krsync-tmp-1a2b") that krsync owns: a file pass creates TEMPDIR.TempLabel-RANDOM
	// (mode 0700) for this rsync alone, rsync writes its temporary files there (--temp-dir)
	// before renaming each into place (the same file system: a rename), and Run removes it
	// whole before it returns, whatever the outcome (see makeAttemptDir for why one per run,
	// at the top). Everything is resolved without following symlinks. RemoveTempDir removes
	// what a killed worker left, at the end of a run. Empty: rsync's default, a temporary
	// ".NAME.XXXXXX" beside each file, which a killed rsync leaves behind for good.
	TempDir string
	// TempLabel is part of this run's directory name, e.g. "p12-a3" for partition 12,
	// attempt 3, so that a leftover says whose it was; "" is "run".
	TempLabel string
	// ListDir, when set, holds the list as a file (--files-from=FILE) while rsync runs; by
	// default rsync reads the list from its standard input (--files-from=-), which needs no
	// writable directory (pods often have a read-only root filesystem) and leaves nothing
	// behind when the worker is killed.
	ListDir string
	// MaxArgBytes bounds the command line (argv and the environment, in bytes as execve counts
	// them) when the entries are passed to rsync as arguments: a larger list goes through
	// --files-from (see Run). 0 is DefaultMaxArgBytes, or less when the stack limit is low;
	// negative always uses --files-from.
	MaxArgBytes int
	// KillGrace is the time between SIGTERM and SIGKILL on cancellation; 0 is DefaultKillGrace.
	KillGrace time.Duration
	// Logger receives the command lines at debug level; nil logs nothing.
	Logger *zerolog.Logger
}

// Result is what one Run did.
type Result struct {
	// Stats are rsync's --stats numbers (summed over the runs of a directory pass).
	Stats Stats
	// FilesTransferred and BytesTransferred are Stats.RegularFilesTransferred and
	// Stats.TotalTransferredSize (the size of the files whose data was sent), for reports.
	FilesTransferred int64
	BytesTransferred int64
	// ExitCode is rsync's exit code (the first non-zero one when a job needed two runs).
	ExitCode int
	// Warnings are non-fatal complaints: vanished files (exit 24, or 23 when every complaint
	// was a listed path that no longer exists) and whatever rsync printed on a successful run.
	Warnings []string
	// Vanished are the listed paths that were gone when rsync looked (at most 1000);
	// VanishedCount counts them all.
	Vanished      []string
	VanishedCount int
	// Args is the command line of the (first) rsync run, binary first.
	Args []string
	// Unchanged counts the listed entries left out of the rsync run because the destination
	// already equals the source (see dropUnchanged); with every entry unchanged rsync does not run.
	Unchanged int64
	// Duration is the wall time of the rsync runs.
	Duration time.Duration
}

// Run copies the job's list from Source to Dest with one rsync (two for a directory pass that
// includes the root), never through a shell. The entries go to rsync as arguments,
//
//	rsync --modify-window=-1 ARGS --relative --dirs --no-recursive --stats -- SOURCE/./NAME... DEST/
//
// when they fit in Job.MaxArgBytes (and each in rsync's path buffer; see entryArgs), else
// through a list:
//
//	rsync --modify-window=-1 ARGS --from0 --files-from=- --stats -- SOURCE/ DEST/
//
// with the list on rsync's standard input (or in a file in Job.ListDir). A partition is never
// split into several runs: rsync -H links only the names it sees in one run, and partitions
// keep every name of an inode together. Why arguments: rsync reads a --files-from list one
// byte at a time (io.c, read_line) and polls its input for every byte; with 10,000 small
// files that was 7 times the reads and 30 times the polls of a plain recursive rsync, while
// the same entries as arguments cost no more than the recursive run.
//
// --temp-dir=TEMPDIR/LABEL-RANDOM (relative to DEST) comes after the user's options when
// Job.TempDir is set.
// --files-from implies --relative (the list's paths keep their directories, which rsync
// creates as "implied directories" with the source's attributes) and --dirs (a listed
// directory is copied as itself, not recursed into), and turns off -a's recursion (rsync(1),
// --files-from); with arguments Run says all three. The list is cleaned first: "." and
// trailing "/" or "/." would make rsync copy a directory's contents, so "dir/" becomes
// "./dir" (every list entry starts with "./", which no comment line can: see cleanList), and
// the root "." is dropped from a file pass (the root exists; its metadata belongs to the
// directory pass).
//
// Entries whose parent directories are not real directories below the source (a symlink on
// the way) are not given to rsync, which would follow it out of the source: the rest is
// copied and the error is a *RefusedError naming them (see dropUnsafe, and the race it
// leaves).
//
// The directory pass (Dirs) puts "--filter=+ */ --filter=- *" before the user's options so
// that only directories can be transferred, whatever the list says; the root, which rsync can
// only name as "." (and then copies its contents), gets a run of its own with --dirs and
// --exclude=*, after the others so that its mtime is set last.
//
// When rsync does not run as root, a file pass adds --chmod=Du+rwx: a directory with mode
// 0555 would otherwise be made read-only by the first rsync that finishes in it while others
// still write there (rsync only relaxes modes for the length of its own run). The directory
// pass then sets the real modes.
//
// On ctx cancellation rsync's process group gets SIGTERM, then SIGKILL after KillGrace, and
// the error wraps ctx.Err(). rsync runs in a process group of its own (a terminal's Ctrl-C
// reaches krsync, which decides) and gets SIGTERM if the calling process dies first (Linux
// PR_SET_PDEATHSIG), so a SIGKILLed worker leaves no rsync copying a partition that the
// coordinator hands to someone else.
//
// A listed path that no longer exists makes rsync exit 23 ("link_stat ... failed: No such
// file or directory"), not 24: when every complaint of an exit 23 is of that kind, the files
// vanished after the walk listed them, and Run reports success with a warning, as for 24.
// Any other rsync failure is an *ExitError. A Result is returned either way.
//
// With the default options (and -S, -v), entries whose destination already equals the source
// are left out before rsync runs (Result.Unchanged): rsync 3.2 with --files-from pays per
// listed entry far more than a recursive run does, which made unchanged re-syncs slow.
func Run(ctx context.Context, job Job) (Result, error) {
	p, err := Prepare(job)
	if err != nil {
		return Result{}, err
	}
	return p.Run(ctx)
}

// Prepared is a job checked and filtered as Run would before starting rsync: its list cleaned,
// the entries below a symlinked parent refused and the unchanged ones left out (both as of
// the moment of Prepare). Join puts several file-pass jobs into one rsync run.
type Prepared struct {
	job            Job
	args           []string
	binary         string
	source, dest   string
	list           []byte
	root           bool
	refused        []string
	refusedCount   int
	tooLong        []string
	tooLongCount   int
	unchanged      int64
	listed, copied int
}

// Prepare checks and filters job without running rsync (see Run).
func Prepare(job Job) (*Prepared, error) {
	args := job.Args
	if args == nil {
		args = DefaultArgs
	}
	if err := ValidateArgs(args); err != nil {
		return nil, err
	}
	binary, err := LookPath(job.Binary)
	if err != nil {
		return nil, err
	}
	if job.Source == "" || job.Dest == "" {
		return nil, fmt.Errorf("%w: source and destination directories are required", ErrBadJob)
	}
	source, err := filepath.Abs(job.Source)
	if err != nil {
		return nil, fmt.Errorf("rsync job: source %s: %w", job.Source, err)
	}
	dest, err := filepath.Abs(job.Dest)
	if err != nil {
		return nil, fmt.Errorf("rsync job: destination %s: %w", job.Dest, err)
	}
	list, root, err := cleanList(job.List)
	if err != nil {
		return nil, err
	}
	p := &Prepared{job: job, args: args, binary: binary, source: source, dest: dest, listed: countEntries(list)}
	list, p.tooLong, p.tooLongCount = dropTooLong(source, dest, list)
	list, p.refused, p.refusedCount = dropUnsafe(source, list)
	if QuickCheckSafe(args) {
		var rootUnchanged bool
		list, rootUnchanged, p.unchanged = dropUnchanged(source, dest, list, root && job.Dirs)
		if rootUnchanged {
			root, p.unchanged = false, p.unchanged+1
		}
	}
	p.list, p.root, p.copied = list, root, countEntries(list)
	return p, nil
}

// Listed counts the entries of the job's list, the root not included.
func (p *Prepared) Listed() int { return p.listed }

// ToCopy counts the entries rsync will be given: the listed ones less the refused and the
// unchanged.
func (p *Prepared) ToCopy() int { return p.copied }

// Unchanged counts the entries left out because the destination already equals the source.
func (p *Prepared) Unchanged() int64 { return p.unchanged }

// Entries are the entries of a file pass that rsync will be given (relative to both roots):
// a --mirror worker clears directories out of their way first (prune.MakeWay); only an entry
// that differs can have one in its way.
func (p *Prepared) Entries() []string { return listEntries(p.list) }

// Join adds q's entries to p's run: one rsync then copies both. Both must be file passes
// over the same roots with the same options; p's TempDir and TempLabel are kept.
// Hard links stay right: each job keeps every name of an inode together, and one run sees
// all of them.
func (p *Prepared) Join(q *Prepared) error {
	if p.job.Dirs || q.job.Dirs || p.source != q.source || p.dest != q.dest || p.binary != q.binary || !slices.Equal(p.args, q.args) {
		return fmt.Errorf("%w: only file passes over the same roots with the same options can share a run", ErrBadJob)
	}
	p.list = append(p.list, q.list...)
	p.refused = append(p.refused, q.refused[:min(len(q.refused), maxFailedPaths-len(p.refused))]...)
	p.refusedCount += q.refusedCount
	p.tooLong = append(p.tooLong, q.tooLong[:min(len(q.tooLong), maxFailedPaths-len(p.tooLong))]...)
	p.tooLongCount += q.tooLongCount
	p.unchanged += q.unchanged
	p.listed += q.listed
	p.copied += q.copied
	return nil
}

// Run starts rsync for what Prepare left (see the package's Run).
func (p *Prepared) Run(ctx context.Context) (Result, error) {
	job, args, binary, source, dest := p.job, p.args, p.binary, p.source, p.dest
	list, root, unchanged, refused, refusedCount := p.list, p.root, p.unchanged, p.refused, p.refusedCount
	log := zerolog.Nop()
	if job.Logger != nil {
		log = *job.Logger
	}
	grace := job.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	r := runner{binary: binary, source: source, dest: dest, grace: grace, log: log, listDir: job.ListDir}
	if searchableDir(source) {
		// Otherwise rsync, given the entries as arguments, would complain once per entry
		// and exit 23; --files-from makes it fail at once with exit 3, as it always did.
		r.argBudget = argBudget(job.MaxArgBytes)
	}

	start := time.Now()
	var res Result
	var firstErr error
	var runs []run
	switch {
	case !job.Dirs:
		if len(list) == 0 {
			break
		}
		extra := []string(nil)
		if os.Geteuid() != 0 {
			extra = append(extra, "--chmod=Du+rwx")
		}
		if job.TempDir != "" && ctx.Err() == nil {
			attempt, err := makeAttemptDir(dest, job.TempDir, job.TempLabel)
			if err != nil {
				return Result{}, err
			}
			// Removed after rsync has exited (Run waits for its whole process group), so
			// nothing writes there any more; a failure to remove is only a warning: the end
			// of the run removes every such directory.
			defer func() {
				if err := removeAttemptDir(dest, attempt); err != nil {
					log.Warn().Err(err).Msg("rsync's temporary directory left behind")
				}
			}()
			// Relative: rsync's receiver works in the destination root and puts a temporary
			// file at TEMPDIR/NAME.XXXXXX from there (receiver.c, get_tmpname); an absolute
			// path would make rsync 3.5 walk every directory above the destination too for
			// each file (see makeAttemptDir).
			extra = append(extra, "--temp-dir="+attempt)
		}
		runs = append(runs, run{args: joinArgs(nil, args, extra), list: list})
	default:
		if len(list) > 0 {
			runs = append(runs, run{args: joinArgs([]string{"--filter=+ */", "--filter=- *"}, args, nil), list: list})
		}
		if root {
			runs = append(runs, run{args: joinArgs([]string{"--exclude=*"}, args, []string{"--dirs"})})
		}
	}

	for _, rn := range runs {
		if ctx.Err() != nil && firstErr == nil {
			firstErr = fmt.Errorf("rsync not run: %w", ctx.Err())
		}
		if firstErr != nil && ctx.Err() != nil {
			break
		}
		out, err := r.run(ctx, rn)
		res.Stats = res.Stats.Add(out.Stats)
		res.Warnings = append(res.Warnings, out.Warnings...)
		res.Vanished = append(res.Vanished, out.Vanished[:min(len(out.Vanished), maxFailedPaths-len(res.Vanished))]...)
		res.VanishedCount += out.VanishedCount
		if res.Args == nil {
			res.Args = out.Args
		}
		if res.ExitCode == 0 {
			res.ExitCode = out.ExitCode
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	res.Unchanged = unchanged
	res.Duration = time.Since(start)
	res.FilesTransferred = res.Stats.RegularFilesTransferred
	res.BytesTransferred = res.Stats.TotalTransferredSize
	if firstErr == nil || ctx.Err() == nil {
		// A stopped run is retried as a whole, and the refusal comes again then.
		if refusedCount > 0 {
			firstErr = &RefusedError{Paths: refused, Count: refusedCount, Why: ErrSymlinkParent, Err: firstErr}
		}
		if p.tooLongCount > 0 {
			firstErr = &RefusedError{Paths: p.tooLong, Count: p.tooLongCount, Why: ErrPathTooLong, Err: firstErr}
		}
	}
	return res, firstErr
}

// joinArgs builds the options of one run: ours that must come before the user's (filter rules
// match in order; a user's --modify-window overrides ours), the user's, -h's antidote, ours
// after.
//
// --modify-window=-1 makes rsync compare mtimes to the nanosecond (rsync(1), --modify-window;
// its default, 0, compares whole seconds): otherwise a directory that a later partition
// touched in the same second as its source mtime keeps the wrong sub-second mtime after the
// directory pass, and a file rewritten with the same size in the same second as the copy is
// skipped by the next run's quick check. On a destination that cannot store nanoseconds
// (FAT, SMB) that would copy unchanged files again on every run: such users pass
// --modify-window=1 (or 0) in their rsync options.
func joinArgs(before, user, after []string) []string {
	args := append([]string(nil), before...)
	args = append(args, "--modify-window=-1")
	args = append(args, user...)
	if wantsHumanNumbers(user) {
		args = append(args, "--no-human-readable") // exact numbers for --stats
	}
	return append(args, after...)
}

// cleanList checks and cleans a NUL-terminated list: empty entries are skipped, absolute
// paths and ".." components are refused, "a//b", "./a", "a/" and "a/." become "./a/b",
// "./a", and the root ("." after cleaning) is reported in root instead of listed.
//
// Every entry comes out as "./NAME": rsync reads a --files-from line that begins with '#' or
// ';' as a comment and skips it, even with --from0 (rsync(1), --files-from; options.c
// read_filesfrom), so a top-level "#notes" or ";x" (and everything listed below such a
// directory) would silently not be copied. A leading "./" can never be a comment, and with
// --relative rsync drops it from the destination path ("./a/b" lands at DEST/a/b; rsync(1),
// --relative: a "./" marks where the implied directories start). Paths that rsync prints
// come without it.
func cleanList(list []byte) (cleaned []byte, root bool, err error) {
	var b bytes.Buffer
	b.Grow(len(list) + len(list)/8)
	for len(list) > 0 {
		entry := list
		if i := bytes.IndexByte(list, 0); i >= 0 {
			entry, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		if len(entry) == 0 {
			continue
		}
		p := string(entry)
		if strings.HasPrefix(p, "/") {
			return nil, false, fmt.Errorf("%w: %q is absolute; paths are relative to the source root", ErrBadList, p)
		}
		for _, part := range strings.Split(p, "/") {
			if part == ".." {
				return nil, false, fmt.Errorf("%w: %q has a \"..\" component", ErrBadList, p)
			}
		}
		p = path.Clean(p)
		if p == "." {
			root = true
			continue
		}
		b.WriteString("./")
		b.WriteString(p)
		b.WriteByte(0)
	}
	return b.Bytes(), root, nil
}

// countEntries counts the entries of a cleaned list.
func countEntries(list []byte) int { return bytes.Count(list, []byte{0}) }

// listEntries splits a cleaned list into its entries without the leading "./".
func listEntries(list []byte) []string {
	var entries []string
	for _, e := range bytes.Split(bytes.TrimSuffix(list, []byte{0}), []byte{0}) {
		entries = append(entries, strings.TrimPrefix(string(e), "./"))
	}
	return entries
}

// run is one rsync invocation: its options (without the list and paths) and its list, if any.
type run struct {
	args []string
	list []byte
}

// runner runs rsync for one job.
type runner struct {
	binary, source, dest string
	listDir              string // see Job.ListDir
	argBudget            int    // bytes of argv and envp for entries as arguments; 0: never (see argBudget)
	grace                time.Duration
	log                  zerolog.Logger
}

// run executes one rsync over rn and reads its output. The entries go to rsync as arguments
// when they fit (see entryArgs and argBudget), through --files-from otherwise.
func (r runner) run(ctx context.Context, rn run) (Result, error) {
	env := rsyncEnv(os.Environ())
	if rn.list != nil && r.argBudget > 0 {
		if paths, ok := entryArgs(r.source, rn.list); ok {
			argv := append([]string{r.binary}, rn.args...)
			argv = append(argv, entryOptions...)
			argv = append(argv, "--stats", "--")
			argv = append(argv, paths...)
			argv = append(argv, dirArg(r.dest))
			if commandBytes(argv, env) <= r.argBudget {
				res, err := r.exec(ctx, argv, env, nil, len(paths))
				// The budget keeps well below the kernel's limit, but an environment or
				// a stack limit that changed under us can still make execve refuse: the
				// list then goes the other way, and rsync has not started.
				if !errors.Is(err, syscall.E2BIG) {
					return res, err
				}
				r.log.Debug().Err(err).Int("entries", len(paths)).Msg("command line too long; passing the list with --files-from")
			}
		}
	}
	argv := append([]string{r.binary}, rn.args...)
	var stdin []byte
	switch {
	case rn.list != nil && r.listDir != "":
		listFile, err := writeList(r.listDir, rn.list)
		if err != nil {
			return Result{}, err
		}
		defer func() { _ = os.Remove(listFile) }()
		argv = append(argv, "--from0", "--files-from="+listFile)
	case rn.list != nil:
		argv = append(argv, "--from0", "--files-from=-")
		stdin = rn.list
	}
	argv = append(argv, "--stats", "--", dirArg(r.source), dirArg(r.dest))
	return r.exec(ctx, argv, env, stdin, 0)
}

// entryOptions are what --files-from implies, given explicitly when the entries are
// arguments (rsync(1), --files-from: it implies --relative and --dirs, and turns -a's
// recursion off): the entries keep their directories below the destination, a listed
// directory is copied as itself, and nothing is recursed into. They come after the user's
// options, where the last word wins; ValidateArgs refuses -r, --no-relative and --no-dirs.
var entryOptions = []string{"--relative", "--dirs", "--no-recursive"}

// exec runs argv with env, stdin on rsync's standard input when not nil; entries counts the
// entries among argv's arguments, which the debug log leaves out.
func (r runner) exec(ctx context.Context, argv, env []string, stdin []byte, entries int) (Result, error) {
	if entries > 0 {
		shown := append(append([]string(nil), argv[:len(argv)-entries-1]...), "...", argv[len(argv)-1])
		r.log.Debug().Strs("argv", shown).Int("entries", entries).Msg("running rsync, entries as arguments")
	} else {
		r.log.Debug().Strs("argv", argv).Msg("running rsync")
	}

	var stats statsParser
	stderr := newStderrReader(r.roots()...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout = &lineWriter{line: stats.line}
	cmd.Stderr = &lineWriter{line: stderr.line}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // one group to signal (rsync forks), and no terminal's Ctrl-C: ctx decides
		// If this process dies without stopping rsync (SIGKILL, OOM), rsync must not go on
		// copying a partition that the coordinator will hand to someone else.
		Pdeathsig: syscall.SIGTERM,
	}
	cmd.WaitDelay = r.grace // a child holding the pipes cannot hang Wait

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{Args: argv}, fmt.Errorf("start rsync %s: %w", r.binary, err)
	}
	stopped := stopOnCancel(ctx, cmd.Process.Pid, r.grace)
	waitErr := cmd.Wait()
	stopped()
	cmd.Stdout.(*lineWriter).flush()
	cmd.Stderr.(*lineWriter).flush()

	res := Result{Stats: stats.stats, Args: argv, Duration: time.Since(start), Vanished: stderr.vanished, VanishedCount: stderr.vanishedCount}
	if ctx.Err() != nil && (waitErr != nil || cmd.ProcessState == nil || !cmd.ProcessState.Success()) {
		// rsync was stopped before it finished: the partition is not known to be complete.
		res.ExitCode = exitCodeOf(cmd.ProcessState)
		return res, fmt.Errorf("rsync stopped after %s: %w", res.Duration.Round(time.Millisecond), ctx.Err())
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return res, fmt.Errorf("wait for rsync: %w", waitErr)
	}
	res.ExitCode = exitCodeOf(cmd.ProcessState)
	if res.ExitCode == ExitVanished || res.ExitCode == ExitPartial {
		stderr.confirmVanished(r.source)
		res.Vanished, res.VanishedCount = stderr.vanished, stderr.vanishedCount
	}
	vanishedOnly := res.ExitCode == ExitPartial && stderr.otherErrors == 0 && len(stderr.vanished) > 0
	switch {
	case res.ExitCode == ExitOK:
		for _, l := range stderr.tail {
			if strings.TrimSpace(l) != "" {
				res.Warnings = append(res.Warnings, l)
			}
		}
		return res, nil
	case res.ExitCode == ExitVanished || vanishedOnly:
		warning := fmt.Sprintf("rsync exit %d (%s): %s", res.ExitCode, ExitMeaning(res.ExitCode), stderr.lastMessage())
		if len(stderr.vanished) > 0 {
			warning = fmt.Sprintf("rsync exit %d: %d listed path(s) vanished after the walk, e.g. %q",
				res.ExitCode, stderr.vanishedCount, stderr.vanished[0])
		}
		res.Warnings = append(res.Warnings, warning)
		return res, nil
	}
	e := &ExitError{
		Code:        res.ExitCode,
		Args:        argv,
		StderrTail:  append([]string(nil), stderr.tail...),
		FailedPaths: stderr.failed,
		FailedCount: stderr.failedCount,
		Vanished:    stderr.vanished,
		noSpace:     stderr.noSpace,
		last:        stderr.lastMessage(),
	}
	if status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		e.Signal = status.Signal().String()
	}
	return res, e
}

// rsyncEnv is rsync's environment: krsync's own, without KRSYNC_* (the lease token has no
// business in a child process), with LC_ALL=C so that rsync's messages are in English and
// escape every non-ASCII byte of a name as \#ooo, which ParseMessage reads back.
func rsyncEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "KRSYNC_") {
			out = append(out, kv)
		}
	}
	return append(out, "LC_ALL=C")
}

// dirArg names a directory's contents for rsync: "dir/" (rsync(1): a trailing slash copies
// the contents, not the directory by name).
func dirArg(dir string) string {
	if strings.HasSuffix(dir, "/") {
		return dir
	}
	return dir + "/"
}

// roots are the prefixes rsync may print in front of a path: the source and destination as
// given and with symlinks resolved (rsync prints its working directory, which getcwd resolves).
func (r runner) roots() []string {
	roots := []string{r.source, r.dest}
	for _, dir := range []string{r.source, r.dest} {
		if resolved, err := filepath.EvalSymlinks(dir); err == nil && resolved != dir {
			roots = append(roots, resolved)
		}
	}
	return roots
}

// exitCodeOf is rsync's exit code, or ExitKilled when a signal ended it.
func exitCodeOf(state *os.ProcessState) int {
	if state == nil {
		return ExitKilled
	}
	if status, ok := state.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return ExitKilled
	}
	return state.ExitCode()
}

// stopOnCancel sends SIGTERM to the process group pgid when ctx is done, and SIGKILL if it has
// not finished grace later. The returned function, called once the leader has been waited for,
// stops the watcher and, after a cancellation, kills whatever is left of the group.
func stopOnCancel(ctx context.Context, pgid int, grace time.Duration) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		if ctx.Err() != nil {
			_ = syscall.Kill(-pgid, syscall.SIGKILL) // children that outlived the leader
		}
	}
}

// writeList writes the list to a temporary file for --files-from.
func writeList(dir string, list []byte) (string, error) {
	f, err := os.CreateTemp(dir, "krsync-list-*")
	if err != nil {
		return "", fmt.Errorf("rsync list file: %w", err)
	}
	_, werr := f.Write(list)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("rsync list file %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// lineWriter splits what a process writes into lines (cut at maxLineBytes) for a callback.
// exec.Cmd calls Write from one goroutine per stream, so it needs no lock.
type lineWriter struct {
	line    func(string)
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLineBytes - len(w.partial)
			if room > 0 {
				w.partial = append(w.partial, p[:min(room, len(p))]...)
			}
			break
		}
		chunk := p[:i]
		if room := maxLineBytes - len(w.partial); room < len(chunk) {
			chunk = chunk[:max(room, 0)]
		}
		w.partial = append(w.partial, chunk...)
		w.line(string(w.partial))
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

// flush hands over a last line without a newline.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = w.partial[:0]
	}
}
