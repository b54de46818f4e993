package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/rsyncexec"
	"github.com/krsync/krsync/worker"
)

// LocalCmd is the `krsync local` command: a coordinator and N workers in one process, talking
// over real HTTP on loopback, the same code paths as in Kubernetes.
type LocalCmd struct {
	Source            string        `help:"Directory to copy from." required:""`
	Dest              string        `help:"Directory to copy into; created when its parent exists." required:""`
	Workers           int           `help:"How many rsyncs run at once." default:"4"`
	FpartOpts         string        `help:"fpart options for the walk; without -f/-s/-n, live partitions of --files-per-partition entries." default:"-zz"`
	FilesPerPartition int64         `help:"Largest partition, in entries, when --fpart-opts has none of -f/-s/-n (the first ones hold 32 and they grow with the walk)." default:"2000"`
	RsyncOpts         string        `help:"rsync options, split like a shell (default: --archive --numeric-ids --hard-links)."`
	Rsync             string        `help:"The rsync binary to run." default:"rsync"`
	StateDir          string        `help:"Where the journal lives, so an interrupted run resumes (default: under $XDG_STATE_HOME or ~/.local/state/krsync, outside the destination)."`
	LeaseTTL          time.Duration `help:"A lease not renewed for this long goes back to the queue." default:"30s"`
	MaxAttempts       int           `help:"Attempts per partition before it is reported failed." default:"3"`
	Progress          string        `help:"Progress bar: auto (on a terminal), always, never." default:"auto" enum:"auto,always,never"`
}

// localPaths are the checked, symlink-resolved locations of one local run.
type localPaths struct {
	source, dest, stateDir string
	destExists             bool
	rsync                  string
	rsyncArgs              []string
	fpart                  fpart.Options
}

// Run copies the source into the destination and prints a summary. Every check happens
// before anything is written; the state directory is removed after a fully successful run
// or one that ended with failed partitions (a rerun walks afresh), and kept when the run was
// interrupted or stopped early, so that running the same command again resumes.
func (c LocalCmd) Run(ctx context.Context, log zerolog.Logger, streams Streams) error {
	p, err := c.check()
	if err != nil {
		return err
	}
	if !p.destExists {
		if err := os.Mkdir(p.dest, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create destination: %w", err)
		}
	}
	if err := os.MkdirAll(p.stateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w (choose another with --state-dir)", err)
	}
	log.Info().Str("source", p.source).Str("dest", p.dest).Int("workers", c.Workers).Str("state_dir", p.stateDir).Msg("starting; an interrupted run resumes from the state directory")

	token, err := randomToken()
	if err != nil {
		return err
	}
	showBar := c.Progress == "always" || (c.Progress == "auto" && streams.StderrIsTerminal)
	partsLog := log
	if showBar && log.GetLevel() == zerolog.InfoLevel {
		// The bar tells the progress; routine info lines would only tear it.
		partsLog = log.Level(zerolog.WarnLevel)
	}
	coord, err := coordinator.New(coordinator.Config{
		Source:      p.source,
		Dest:        p.dest,
		Partitioner: p.fpart,
		LeaseTTL:    c.LeaseTTL,
		MaxAttempts: c.MaxAttempts,
		Token:       token,
		StateDir:    p.stateDir,
	}, partsLog.With().Str("component", "coordinator").Logger())
	if err != nil {
		return usagef("%v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen on loopback: %w", err)
	}
	client, err := leaseapi.NewClient("http://"+ln.Addr().String(), leaseapi.ClientOptions{Token: token, GiveUpAfter: time.Minute})
	if err != nil {
		ln.Close()
		return err
	}

	start := time.Now()
	res := c.runAll(ctx, coord, ln, client, p, partsLog, showBar, streams.Stderr)
	status := res.status
	if status.Partitions.Total == 0 && status.EntriesWalked == 0 {
		status = coord.Status()
	}
	summarize(log, streams, status, time.Since(start), c.Workers)
	return c.outcome(ctx, res, status, p.stateDir, log)
}

// check validates everything before anything is written: the source, the destination and
// their overlap, rsync and its options, fpart's options, and the state directory.
func (c LocalCmd) check() (localPaths, error) {
	var p localPaths
	var err error
	switch {
	case c.Source == "":
		return p, usagef("--source is empty: name the directory to copy from")
	case c.Dest == "":
		return p, usagef("--dest is empty: name the directory to copy into")
	}
	switch {
	case c.Workers < 1:
		return p, usagef("--workers %d: need at least 1", c.Workers)
	case c.LeaseTTL <= 0:
		return p, usagef("--lease-ttl %s: must be positive", c.LeaseTTL)
	case c.MaxAttempts < 1:
		return p, usagef("--max-attempts %d: need at least 1", c.MaxAttempts)
	}
	if p.fpart, err = fpart.ParseOptionString(c.FpartOpts); err != nil {
		return p, usagef("--fpart-opts: %v", err)
	}
	p.fpart = coordinator.LiveDefaults(p.fpart, c.FilesPerPartition, c.Workers)
	if err := p.fpart.Validate(); err != nil {
		return p, usagef("--fpart-opts: %v", err)
	}
	if p.rsyncArgs, err = rsyncArgs(c.RsyncOpts); err != nil {
		return p, err
	}
	if p.rsync, err = rsyncexec.LookPath(c.Rsync); err != nil {
		return p, usagef("%v", err)
	}
	if p.source, err = resolveSource(c.Source); err != nil {
		return p, usagef("%v", err)
	}
	if p.dest, p.destExists, err = resolveDest(c.Dest); err != nil {
		return p, usagef("%v", err)
	}
	if err := refuseOverlap(p.source, p.dest); err != nil {
		return p, usagef("%v", err)
	}
	if p.stateDir, err = chooseStateDir(c.StateDir, p.source, p.dest); err != nil {
		return p, usagef("%v", err)
	}
	return p, nil
}

func resolveSource(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("source %s: %w", dir, err)
	}
	if err := worker.CheckSource(abs); err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// resolveDest resolves dir; a missing destination is fine when its parent is a writable
// directory (rsync creates it too).
func resolveDest(dir string) (resolved string, exists bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, fmt.Errorf("destination %s: %w", dir, err)
	}
	if _, err := os.Lstat(abs); errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(abs)
		if err := worker.CheckDest(parent); err != nil {
			return "", false, fmt.Errorf("destination %s cannot be created: %w", dir, err)
		}
		realParent, err := filepath.EvalSymlinks(parent)
		if err != nil {
			return "", false, fmt.Errorf("destination %s: %w", dir, err)
		}
		return filepath.Join(realParent, filepath.Base(abs)), false, nil
	}
	if err := worker.CheckDest(abs); err != nil {
		return "", false, err
	}
	resolved, err = filepath.EvalSymlinks(abs)
	return resolved, true, err
}

// refuseOverlap refuses a destination inside the source (the copy would copy itself) and a
// source inside the destination. Both paths are resolved; comparing inodes as well catches
// bind mounts that show one directory under two names.
func refuseOverlap(source, dest string) error {
	switch {
	case within(dest, source):
		return fmt.Errorf("destination %s is inside the source %s: choose a destination outside it", dest, source)
	case within(source, dest):
		return fmt.Errorf("source %s is inside the destination %s: choose a destination outside it", source, dest)
	}
	return nil
}

// within reports whether path is dir or lies under it, by name or by inode.
func within(path, dir string) bool {
	if path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/") {
		return true
	}
	dirInfo, err := os.Stat(dir)
	if err != nil {
		return false
	}
	for p := path; ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && os.SameFile(fi, dirInfo) {
			return true
		}
		if p == filepath.Dir(p) {
			return false
		}
	}
}

// chooseStateDir picks the journal's directory: the user's, else one per source and
// destination pair under the user's state directory (or the temporary directory), never
// inside the source (it would be copied) nor the destination (a successful run leaves
// nothing there).
func chooseStateDir(flag, source, dest string) (string, error) {
	if flag != "" {
		abs, err := filepath.Abs(flag)
		if err != nil {
			return "", fmt.Errorf("--state-dir %s: %w", flag, err)
		}
		if within(resolvePrefix(abs), source) {
			return "", fmt.Errorf("--state-dir %s is inside the source %s: it would be copied; choose another", flag, source)
		}
		return abs, nil
	}
	sum := sha256.Sum256([]byte(source + "\x00" + dest))
	name := hex.EncodeToString(sum[:8])
	var bases []string
	if xdg := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(xdg) {
		bases = append(bases, filepath.Join(xdg, "krsync"))
	} else if home, err := os.UserHomeDir(); err == nil {
		bases = append(bases, filepath.Join(home, ".local", "state", "krsync"))
	}
	bases = append(bases, filepath.Join(os.TempDir(), fmt.Sprintf("krsync-state-%d", os.Getuid())))
	for _, base := range bases {
		dir := filepath.Join(base, name)
		real := resolvePrefix(dir)
		if !within(real, source) && !within(real, dest) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no default state directory outside %s and %s: set --state-dir", source, dest)
}

// resolvePrefix resolves the symlinks of the longest existing prefix of path.
func resolvePrefix(path string) string {
	var rest []string
	for p := path; ; p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{real}, rest...)...)
		}
		if p == filepath.Dir(p) {
			return path
		}
		rest = append([]string{filepath.Base(p)}, rest...)
	}
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("lease API token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// localResult is how the coordinator and the workers ended.
type localResult struct {
	status   leaseapi.Status
	coordErr error
	// workerErr is the first error of a worker that stopped on its own (not by cancellation).
	workerErr error
}

// runAll runs the coordinator and the workers until the work is done, a worker stops on a
// fatal error, or ctx is cancelled. The coordinator outlives the workers so that stopping
// workers can hand their leases back to it.
func (c LocalCmd) runAll(ctx context.Context, coord *coordinator.Coordinator, ln net.Listener, client *leaseapi.Client,
	p localPaths, log zerolog.Logger, showBar bool, stderr io.Writer) localResult {
	coordCtx, stopCoord := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCoord()
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()

	type coordResult struct {
		status leaseapi.Status
		err    error
	}
	coordDone := make(chan coordResult, 1)
	go func() {
		status, err := coord.Run(coordCtx, ln)
		coordDone <- coordResult{status, err}
	}()

	var res localResult
	var mu sync.Mutex
	var workers sync.WaitGroup
	for i := range c.Workers {
		name := fmt.Sprintf("local-%d", i+1)
		workers.Go(func() {
			err := worker.Run(workCtx, worker.Config{
				Client: client, Name: name, Source: p.source, Dest: p.dest,
				RsyncBinary: p.rsync, RsyncArgs: p.rsyncArgs, StopGrace: 2 * time.Second,
			}, log)
			if err != nil && workCtx.Err() == nil {
				mu.Lock()
				if res.workerErr == nil {
					res.workerErr = err
				}
				mu.Unlock()
				stopWork() // the others would fail the same way; they hand their leases back
			}
		})
	}
	workersDone := make(chan struct{})
	go func() {
		workers.Wait()
		close(workersDone)
	}()

	var progress sync.WaitGroup
	stopBar := make(chan struct{})
	if showBar {
		progress.Go(func() { showProgress(coord, stderr, stopBar) })
	}

	var cr coordResult
	select {
	case <-workersDone:
		if workCtx.Err() != nil {
			stopCoord() // interrupted, or a worker failed: nobody is left to do the work
		}
		cr = <-coordDone
	case cr = <-coordDone:
		stopWork() // the coordinator has told the workers; stragglers need not wait
		<-workersDone
	}
	close(stopBar)
	progress.Wait()
	mu.Lock()
	defer mu.Unlock()
	res.status, res.coordErr = cr.status, cr.err
	return res
}

// outcome turns how the run ended into the command's error, and cleans up after success.
func (c LocalCmd) outcome(ctx context.Context, res localResult, status leaseapi.Status, stateDir string, log zerolog.Logger) error {
	resume := fmt.Sprintf("state kept in %s; run the same command again to resume", stateDir)
	switch {
	case res.coordErr == nil && res.workerErr == nil:
		c.removeState(stateDir, log)
		return nil
	case errors.Is(res.coordErr, coordinator.ErrInvalidConfig):
		// e.g. the state directory holds the journal of a copy to another destination.
		return usageError{res.coordErr}
	case ctx.Err() != nil:
		return interruptedError{msg: "interrupted; " + resume, err: ctx.Err()}
	case res.workerErr != nil:
		return exitStatus{1, fmt.Errorf("%w; %s", res.workerErr, resume)}
	case errors.Is(res.coordErr, coordinator.ErrIncomplete):
		// The run is over, not interrupted: what failed (unreadable entries, walk errors)
		// needs a fix and a fresh walk, which skips what is already copied.
		c.removeState(stateDir, log)
		return exitStatus{1, fmt.Errorf("%w (%d of %d partitions failed, %d walk errors); fix the cause and run again: the next run walks afresh and skips what is already copied",
			res.coordErr, status.Partitions.Failed, status.Partitions.Total, status.WalkErrors)}
	default:
		return exitStatus{1, fmt.Errorf("%w; %s", res.coordErr, resume)}
	}
}

// removeState forgets a finished run, so the next run starts clean. A default state
// directory is krsync's own and goes whole; in a --state-dir only the journal goes, and the
// directory too when that leaves it empty.
func (c LocalCmd) removeState(stateDir string, log zerolog.Logger) {
	var err error
	if c.StateDir == "" {
		err = os.RemoveAll(stateDir)
	} else if err = os.Remove(filepath.Join(stateDir, coordinator.JournalFile)); err == nil || errors.Is(err, fs.ErrNotExist) {
		err = nil
		_ = os.Remove(stateDir) // fails, harmlessly, when something else is in it
	}
	if err != nil {
		log.Warn().Err(err).Str("state_dir", stateDir).Msg("could not remove the state of the finished run")
	}
}

// interruptedError reads as its message and unwraps to context.Canceled (exit 130).
type interruptedError struct {
	msg string
	err error
}

func (e interruptedError) Error() string { return e.msg }
func (e interruptedError) Unwrap() error { return e.err }

// showProgress draws a bar of bytes done over bytes walked, with files in its description,
// until stop is closed. The total grows while the walk goes on.
func showProgress(coord *coordinator.Coordinator, w io.Writer, stop <-chan struct{}) {
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
	)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st := coord.Status()
		walking := ""
		if !st.WalkDone {
			walking = ", walking"
		}
		if st.BytesWalked > 0 && bar.GetMax64() != st.BytesWalked {
			bar.ChangeMax64(st.BytesWalked)
		}
		bar.Describe(fmt.Sprintf("files %d/%d, partitions %d/%d%s", st.EntriesDone, st.EntriesWalked,
			st.Partitions.Done, st.Partitions.Total, walking))
		_ = bar.Set64(st.BytesDone)
		select {
		case <-stop:
			_ = bar.Finish()
			return
		case <-tick.C:
		}
	}
}

// summarize reports the run: always as one log line with the numbers (JSON with
// --log-format=json), and on a terminal also as a few lines of prose.
func summarize(log zerolog.Logger, streams Streams, st leaseapi.Status, took time.Duration, workers int) {
	ev := log.Info()
	switch {
	case st.Partitions.Failed > 0:
		ev = log.Warn()
	case streams.StderrIsTerminal:
		ev = log.Debug() // the prose below says it
	}
	ev.Int64("partitions_done", st.Partitions.Done).
		Int64("partitions_failed", st.Partitions.Failed).
		Int64("partitions_total", st.Partitions.Total).
		Int64("files_transferred", st.FilesTransferred).
		Int64("bytes_transferred", st.BytesTransferred).
		Int64("entries_walked", st.EntriesWalked).
		Int64("bytes_walked", st.BytesWalked).
		Int64("walk_errors", st.WalkErrors).
		Int64("vanished", st.Vanished).
		Float64("duration_seconds", took.Seconds()).
		Msg("summary")
	for _, f := range st.Failed {
		log.Warn().Int64("partition", f.Partition).Int("attempts", f.Attempts).Str("error", f.Error).
			Strs("failed_paths", f.FailedPaths).Msg("partition failed")
	}
	if !streams.StderrIsTerminal {
		return
	}
	fmt.Fprintf(streams.Stderr, "Synced %d of %d entries (%s) in %s with %d workers: %d files (%s) transferred.\n",
		st.EntriesDone, st.EntriesWalked, humanBytes(st.BytesWalked), took.Round(time.Millisecond), workers,
		st.FilesTransferred, humanBytes(st.BytesTransferred))
	fmt.Fprintf(streams.Stderr, "Partitions: %d done, %d failed, %d in all.\n", st.Partitions.Done, st.Partitions.Failed, st.Partitions.Total)
	if st.Vanished > 0 {
		fmt.Fprintf(streams.Stderr, "%d entries vanished during the walk (deleted while krsync ran): not copied, not an error.\n", st.Vanished)
	}
	for _, f := range st.Failed {
		fmt.Fprintf(streams.Stderr, "  partition %d failed after %d attempts: %s\n", f.Partition, f.Attempts, f.Error)
		for _, path := range f.FailedPaths {
			fmt.Fprintf(streams.Stderr, "    %q\n", path)
		}
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
