package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/prune"
	"github.com/krsync/krsync/rsyncexec"
)

// Defaults for the zero values of Config.
const (
	// DefaultWait bounds one long poll for a lease; the coordinator may answer sooner.
	DefaultWait = 20 * time.Second
	// DefaultStopGrace bounds the reports a stopping worker still sends (the hand-back of its
	// lease), so that SIGTERM ends the process promptly even when the coordinator is gone.
	DefaultStopGrace = 5 * time.Second
	// fallbackTTL is assumed when a lease comes without a time to live.
	fallbackTTL = 30 * time.Second
	// minRenewEvery keeps a tiny TTL from turning renewals into a busy loop.
	minRenewEvery = 50 * time.Millisecond
	// waitPause spaces lease requests when the coordinator answers "wait" without long-polling.
	waitPause = 250 * time.Millisecond
)

// StopMessage is the error a worker reports when it hands a lease back because it is stopping.
const StopMessage = "worker stopping"

// ErrFatal marks an error after which this worker stops leasing: every other partition would
// fail the same way (a bad rsync option, a missing rsync, a full or read-only destination).
var ErrFatal = errors.New("stopping this worker")

// fatalError reads as its message and matches ErrFatal with errors.Is.
type fatalError struct{ msg string }

func (e fatalError) Error() string        { return e.msg }
func (e fatalError) Is(target error) bool { return target == ErrFatal }

func fatalf(format string, args ...any) error { return fatalError{fmt.Sprintf(format, args...)} }

// Config is what one worker needs. Client, Name, Source and Dest are required.
type Config struct {
	// Client talks to the coordinator; its GiveUpAfter bounds how long the worker waits for an
	// unreachable coordinator.
	Client *leaseapi.Client
	// Name identifies the worker to the coordinator (the pod name in Kubernetes).
	Name string
	// Source and Dest are the roots the partitions' relative paths are copied between.
	Source, Dest string
	// RsyncBinary is the rsync to run; empty means "rsync" from PATH.
	RsyncBinary string
	// RsyncArgs are the user's rsync options; nil means rsyncexec.DefaultArgs.
	RsyncArgs []string
	// Wait bounds one long poll for a lease; zero means DefaultWait.
	Wait time.Duration
	// StopGrace bounds the reports sent after ctx is cancelled; zero means DefaultStopGrace.
	StopGrace time.Duration
}

// Run leases partitions and rsyncs them until the coordinator says all work is done, and then
// returns nil.
//
// A partition that fails in a retryable way (rsync exit 23, 30, ...) is reported with its
// failed paths and the loop goes on: the coordinator re-issues it, maybe to another worker.
// A lease that goes stale while rsync runs (the coordinator gave it away) stops that rsync
// and the loop goes on without a report. A failure that would repeat on every partition
// (rsync's exit 1-4: syntax, usage, protocol, unsupported; rsync not starting) is reported
// and then ends Run with an error wrapping ErrFatal, so one bad --rsync-opts costs one
// partition attempt, not all of them. A full destination (ENOSPC, quota) ends Run the same
// way, but its lease is handed back unspent: the partition stays pending for a rerun.
//
// When ctx is cancelled (SIGTERM) Run stops rsync, hands its lease back (within StopGrace: a
// release of this worker, else a retryable failure with the message StopMessage), and returns
// an error wrapping ctx.Err().
func Run(ctx context.Context, cfg Config, log zerolog.Logger) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	w := &worker{cfg: cfg, log: log.With().Str("worker", cfg.Name).Logger()}
	if w.cfg.Wait <= 0 {
		w.cfg.Wait = DefaultWait
	}
	if w.cfg.StopGrace <= 0 {
		w.cfg.StopGrace = DefaultStopGrace
	}
	if w.cfg.RsyncArgs == nil {
		w.cfg.RsyncArgs = rsyncexec.DefaultArgs
	}
	w.roots = [2]rootID{statRoot(w.cfg.Source), statRoot(w.cfg.Dest)}
	return w.loop(ctx)
}

func (c Config) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("worker: no coordinator client")
	case c.Name == "":
		return errors.New("worker: no name")
	case c.Source == "":
		return errors.New("worker: no source directory")
	case c.Dest == "":
		return errors.New("worker: no destination directory")
	}
	return nil
}

type worker struct {
	cfg Config
	log zerolog.Logger
	// sourceChecked is set once a lease's SourceCheck names were found in the source.
	sourceChecked bool
	// vouchedRoot is the source root's identity when checkSource found at least half of the
	// SourceCheck names in it (see mostlyVanished); zero otherwise.
	vouchedRoot rootID
	// roots are the source's and the destination's identities when the worker started
	// (zero when they could not be read): see checkRoots.
	roots [2]rootID
}

func (w *worker) loop(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return w.stopped(ctx)
		}
		asked := time.Now()
		resp, err := w.cfg.Client.Lease(ctx, w.cfg.Name, w.cfg.Wait)
		if err != nil {
			if ctx.Err() != nil {
				return w.stopped(ctx)
			}
			if errors.Is(err, leaseapi.ErrUnreachable) {
				return fmt.Errorf("worker %s: %w; check that the coordinator runs at that URL (--give-up-after bounds the wait)", w.cfg.Name, err)
			}
			return fmt.Errorf("worker %s: %w", w.cfg.Name, err)
		}
		switch resp.State {
		case leaseapi.LeaseDone:
			w.log.Debug().Msg("coordinator says all work is done")
			return nil
		case leaseapi.LeaseWait:
			// A coordinator that long-polls answers "wait" only after Wait; one that does not
			// would make this a busy loop, so pause when the answer came back at once.
			if time.Since(asked) < waitPause {
				select {
				case <-ctx.Done():
				case <-time.After(waitPause):
				}
			}
		case leaseapi.LeaseGranted:
			if err := w.runGranted(ctx, *resp.Lease); err != nil {
				return err
			}
		}
	}
}

// stopped is Run's error after ctx ended; it wraps ctx.Err() (context.Canceled), whatever the
// cause (signal.NotifyContext's cause is the signal).
func (w *worker) stopped(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
		return fmt.Errorf("worker %s stopped (%v): %w", w.cfg.Name, cause, ctx.Err())
	}
	return fmt.Errorf("worker %s stopped: %w", w.cfg.Name, ctx.Err())
}

// runLease copies one partition and reports it. A nil error means "lease the next one".
//
// What the worker creates or removes in the destination is the lease's TempDir only: rsync
// keeps its temporary files in a subdirectory of it made for this attempt, which
// rsyncexec.Run removes whole when rsync has ended (success, failure or stop), and the lease
// that says RemoveTempDir removes TempDir whole before its rsync runs. A worker killed
// outright leaves its attempt's subdirectory behind; that final removal takes it. Nothing
// else in the destination is removed by krsync itself, whatever its name, unless the lease
// says Mirror (see mirrorStep and package prune).
//
// prep, when not nil, is the lease's rsync job already prepared (see gather); nil prepares it
// here, after the mirror step.
func (w *worker) runLease(ctx context.Context, l leaseapi.Lease, prep *rsyncexec.Prepared) error {
	log := w.leaseLog(l)
	if prep == nil {
		log.Debug().Int64("entries", l.Entries).Int64("bytes", l.Bytes).Msg("leased")
	}
	if err := w.checkSource(l); err != nil {
		// Not this partition's fault: hand it back unspent for a worker that sees the tree.
		w.handBack(ctx, l, log)
		return err
	}
	if err := w.checkRoots(); err != nil {
		w.handBack(ctx, l, log)
		return err
	}
	switch l.Kind {
	case leaseapi.KindFiles, leaseapi.KindDirs, leaseapi.KindPrune:
	case leaseapi.KindVerify:
		return w.runVerify(ctx, l, log) // verify.go
	default:
		return w.refuseKind(ctx, l, log)
	}

	rsyncCtx, stopRsync := context.WithCancelCause(ctx)
	defer stopRsync(nil)
	var renewing sync.WaitGroup
	renewing.Go(func() { w.renew(rsyncCtx, l, stopRsync, log) })
	var res rsyncexec.Result
	deleted, skipRsync, runErr := w.mirrorStep(rsyncCtx, l, log)
	if runErr == nil && !skipRsync && l.RemoveTempDir && l.TempDir != "" {
		// Every file partition has settled when the coordinator sends this lease, and the
		// root's mtime, which the removal changes, is set by this lease's rsync afterwards.
		runErr = rsyncexec.RemoveTempDir(w.cfg.Dest, l.TempDir)
	}
	if runErr == nil && !skipRsync && prep == nil {
		prep, runErr = rsyncexec.Prepare(w.job(l, &log))
	}
	if runErr == nil && !skipRsync {
		var cleared int64
		cleared, runErr = w.clearWay(rsyncCtx, l, prep, log)
		deleted += cleared
	}
	if runErr == nil && !skipRsync {
		res, runErr = prep.Run(rsyncCtx)
	}
	stopRsync(errRsyncEnded)
	renewing.Wait()
	if runErr == nil {
		if err := w.mostlyVanished(l, res); errors.Is(err, ErrSourceMismatch) {
			w.handBack(ctx, l, log)
			return err
		} else if err != nil {
			runErr = err
		}
	}

	if err := w.checkRoots(); err != nil {
		// rsync or the deletions may have worked in the new directory: nothing of this
		// lease is reported done.
		w.handBack(ctx, l, log)
		return err
	}
	switch cause := context.Cause(rsyncCtx); {
	case runErr == nil:
		// Even when a stop was asked meanwhile, the copy is done: report it, not hand it back.
		return w.complete(ctx, l, res, deleted, log)
	case ctx.Err() != nil:
		w.handBack(ctx, l, log)
		return w.stopped(ctx)
	case errors.Is(cause, leaseapi.ErrStaleLease), errors.Is(cause, leaseapi.ErrUnknownPartition):
		log.Warn().Err(cause).Msg("lease lost while rsync ran; rsync stopped, moving on")
		return nil
	default:
		return w.fail(ctx, l, runErr, log)
	}
}

// job is the rsync job of a lease.
func (w *worker) job(l leaseapi.Lease, log *zerolog.Logger) rsyncexec.Job {
	return rsyncexec.Job{
		Binary:    w.cfg.RsyncBinary,
		Args:      w.cfg.RsyncArgs,
		Source:    w.cfg.Source,
		Dest:      w.cfg.Dest,
		List:      l.List,
		Dirs:      l.Kind == leaseapi.KindDirs,
		TempDir:   l.TempDir,
		TempLabel: fmt.Sprintf("p%d-a%d", l.Partition, l.Attempt),
		Logger:    log,
	}
}

// errRsyncEnded stops the renewals once rsync has returned.
var errRsyncEnded = errors.New("rsync ended")

// renew extends the lease every third of its TTL until ctx ends. When the coordinator says
// the lease is no longer ours, it stops rsync through stop with that error as the cause.
func (w *worker) renew(ctx context.Context, l leaseapi.Lease, stop context.CancelCauseFunc, log zerolog.Logger) {
	ttl := l.TTL()
	if ttl <= 0 {
		ttl = fallbackTTL
	}
	timer := time.NewTimer(renewEvery(ttl))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		// Retrying past the lease's life is pointless: by then the coordinator has expired it
		// and the next renewal learns so.
		callCtx, cancel := context.WithTimeout(ctx, ttl)
		newTTL, err := w.cfg.Client.Renew(callCtx, l.Partition, l.Token)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, leaseapi.ErrStaleLease), errors.Is(err, leaseapi.ErrUnknownPartition):
			stop(err)
			return
		case err != nil:
			log.Warn().Err(err).Msg("lease renewal failed; trying again")
		case newTTL > 0:
			ttl = newTTL
		}
		timer.Reset(renewEvery(ttl))
	}
}

func renewEvery(ttl time.Duration) time.Duration {
	return max(ttl/3, minRenewEvery)
}

func (w *worker) complete(ctx context.Context, l leaseapi.Lease, res rsyncexec.Result, deleted int64, log zerolog.Logger) error {
	stats := leaseapi.TransferStats{
		FilesTransferred: res.FilesTransferred,
		BytesTransferred: res.BytesTransferred,
		Warnings:         res.Warnings,
		Deleted:          deleted,
		Unchanged:        res.Unchanged,
		Vanished:         int64(res.VanishedCount),
		ExitCode:         res.ExitCode,
	}
	return w.sendCompletion(ctx, l, stats, log, func() {
		log.Debug().Int64("files_transferred", stats.FilesTransferred).Int64("bytes_transferred", stats.BytesTransferred).Msg("partition done")
		for _, warning := range stats.Warnings {
			log.Warn().Str("rsync", warning).Msg("partition done with a warning")
		}
	})
}

// sendCompletion reports l done with stats (done logs it). A refusal because the partition
// moved on to another lease is logged and the worker goes on; a coordinator that cannot be
// reached ends the worker.
func (w *worker) sendCompletion(ctx context.Context, l leaseapi.Lease, stats leaseapi.TransferStats, log zerolog.Logger, done func()) error {
	reportCtx, cancel := w.reportContext(ctx)
	defer cancel()
	err := w.cfg.Client.Complete(reportCtx, l.Partition, l.Token, stats)
	switch {
	case err == nil:
		done()
	case errors.Is(err, leaseapi.ErrStaleLease), errors.Is(err, leaseapi.ErrUnknownPartition):
		// Someone else holds the partition now; the coordinator keeps their report.
		log.Warn().Err(err).Msg("completion refused; the partition belongs to another lease")
	default:
		return fmt.Errorf("worker %s: %w", w.cfg.Name, err)
	}
	if ctx.Err() != nil {
		return w.stopped(ctx)
	}
	return nil
}

// fail reports a failed rsync and decides whether this worker goes on.
func (w *worker) fail(ctx context.Context, l leaseapi.Lease, runErr error, log zerolog.Logger) error {
	req := leaseapi.FailRequest{Token: l.Token, Error: leaseapi.OneLine(runErr.Error()), Retryable: true}
	var fatal error
	var exitErr *rsyncexec.ExitError
	var refused *rsyncexec.RefusedError
	var vanished *vanishedError
	var pruneErr *prune.Error
	switch {
	case errors.As(runErr, &exitErr) && exitErr.NoSpace():
		// Every partition would fail the same way, and it is not the partition's fault: hand
		// it back without spending an attempt, so a rerun after freeing space completes it.
		w.handBack(ctx, l, log)
		return fatalf("worker %s: destination %s is full: free some space and run again (%s)", w.cfg.Name, w.cfg.Dest, req.Error)
	case errors.As(runErr, &refused):
		// Entries below a symlinked parent, or too long for rsync: another attempt would
		// refuse them again. The rest of the partition was copied (or failed for its own
		// reasons, named too).
		req.Retryable = false
		req.FailedPaths = refused.AllPaths()
		if errors.As(refused.Err, &exitErr) {
			req.FailedPaths = append(req.FailedPaths, exitErr.FailedPaths...)
			if !exitErr.Retryable() {
				fatal = fatalf("partition %d: %s", l.Partition, req.Error)
			}
		}
	case errors.As(runErr, &vanished):
		req.Retryable = false
		req.FailedPaths = vanished.paths
	case errors.As(runErr, &exitErr):
		req.Retryable = exitErr.Retryable()
		req.FailedPaths = exitErr.FailedPaths
		if !req.Retryable {
			fatal = fatalf("partition %d: %s", l.Partition, req.Error)
		}
	case errors.As(runErr, &pruneErr):
		// Some entries could not be judged or deleted (an unreadable source directory, a
		// destination entry that would not go): they were kept; another attempt may do.
		req.FailedPaths = pruneErr.Paths
	case errors.Is(runErr, rsyncexec.ErrBadList), errors.Is(runErr, prune.ErrBadPath):
		// This partition's list is wrong, not this worker: no retry, but go on.
		req.Retryable = false
	default:
		// rsync did not run at all (missing binary, refused option, no list file, krsync's
		// temporary directory unusable: a symlink or a file planted there): nothing this
		// worker runs will work, but another worker may be fine, so the partition stays
		// retryable.
		fatal = fatalf("partition %d: %s", l.Partition, req.Error)
	}
	if exitErr != nil {
		req.ExitCode = &exitErr.Code // for the coordinator's metrics
	}
	reportCtx, cancel := w.reportContext(ctx)
	defer cancel()
	if err := w.cfg.Client.Fail(reportCtx, l.Partition, req); err != nil &&
		!errors.Is(err, leaseapi.ErrStaleLease) && !errors.Is(err, leaseapi.ErrUnknownPartition) {
		if fatal == nil {
			return fmt.Errorf("worker %s: %w", w.cfg.Name, err)
		}
		log.Warn().Err(err).Msg("could not report the failure")
	}
	if fatal != nil {
		return fmt.Errorf("worker %s: %w", w.cfg.Name, fatal)
	}
	log.Warn().Str("error", req.Error).Bool("retryable", req.Retryable).Strs("failed_paths", req.FailedPaths).Msg("partition failed")
	return nil
}

// handBack gives the lease back when the worker stops, within StopGrace. It asks the
// coordinator to release this worker (the lease goes back to the queue without counting as an
// attempt, and the coordinator stops waiting for this worker at the end), and falls back to
// failing the lease as retryable with StopMessage.
func (w *worker) handBack(ctx context.Context, l leaseapi.Lease, log zerolog.Logger) {
	reportCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.StopGrace)
	defer cancel()
	released, err := w.cfg.Client.Release(reportCtx, w.cfg.Name)
	if err == nil && released > 0 {
		log.Info().Msg("lease handed back")
		return
	}
	err = w.cfg.Client.Fail(reportCtx, l.Partition, leaseapi.FailRequest{Token: l.Token, Error: StopMessage, Retryable: true})
	switch {
	case err == nil:
		log.Info().Msg("lease handed back")
	case errors.Is(err, leaseapi.ErrStaleLease), errors.Is(err, leaseapi.ErrUnknownPartition):
		log.Info().Msg("lease had already ended")
	default:
		log.Warn().Err(err).Msg("could not hand the lease back; it will expire after its TTL")
	}
}

// reportContext is the context of a report after rsync: it survives the cancellation of ctx
// by StopGrace, so a stop that arrives while reporting does not lose the report.
func (w *worker) reportContext(ctx context.Context) (context.Context, context.CancelFunc) {
	reportCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var mu sync.Mutex
	var timer *time.Timer
	stopWatching := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		timer = time.AfterFunc(w.cfg.StopGrace, cancel)
	})
	return reportCtx, func() {
		stopWatching()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}
