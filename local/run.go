package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/rsyncexec"
	"github.com/krsync/krsync/worker"
)

// ErrInterrupted is wrapped, with the context's error, by Run's error when ctx ended the run
// (Ctrl-C): the state is kept, and running the same copy again resumes it.
var ErrInterrupted = errors.New("interrupted")

// Result is how a run ended, also when Run returns an error after the copy began.
type Result struct {
	Status   leaseapi.Status
	Took     time.Duration
	StateDir string
}

// Run checks cfg, copies the source into the destination and returns the run's numbers.
// Every check happens before anything is written (errors wrap ErrInvalidConfig). The
// coordinator forgets the state after a run that ended, complete or not (a rerun walks
// afresh), and keeps it when the run was interrupted or stopped early, so that running the
// same copy again resumes. An incomplete run's error wraps coordinator.ErrIncomplete.
func Run(ctx context.Context, cfg Config, log zerolog.Logger) (Result, error) {
	p, err := cfg.check()
	if err != nil {
		return Result{}, err
	}
	res := Result{StateDir: p.stateDir}
	if err := checkStateDir(p.stateDir); err != nil {
		return res, invalidf("%w", err)
	}

	token := leaseapi.NewToken()
	partsLog := log
	if cfg.Progress != nil && log.GetLevel() == zerolog.InfoLevel && !cfg.DryRun {
		// The bar tells the progress; routine info lines would only tear it. (A dry run's
		// "would delete" lines are its output: they stay.)
		partsLog = log.Level(zerolog.WarnLevel)
	}
	// The walk sees the destination as the workers do, in this process: it may leave out
	// what is unchanged when the workers' rsync would skip it too.
	// A destination still to be created holds nothing to compare with.
	var compare coordinator.DestComparer
	if p.destExists && rsyncexec.QuickCheckSafe(p.workerRsyncArgs()) {
		dc, err := rsyncexec.OpenDestCompare(p.dest)
		if err != nil {
			return res, err
		}
		defer dc.Close()
		compare = dc.Compare
	}
	coord, err := coordinator.New(coordinator.Config{
		Source:      p.source,
		Dest:        p.dest,
		Partitioner: p.fpart,
		LeaseTTL:    cfg.LeaseTTL,
		MaxAttempts: cfg.MaxAttempts,
		Token:       token,
		StateDir:    p.stateDir,
		Mirror:      cfg.Mirror,
		DryRun:      cfg.DryRun,
		Verify:      cfg.Verify,
		CompareDest: compare,
	}, partsLog.With().Str("component", "coordinator").Logger())
	if err != nil {
		return res, invalidf("%w", err)
	}
	// Created only now: every check above can still refuse the run with nothing written.
	if !p.destExists {
		if err := os.Mkdir(p.dest, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return res, fmt.Errorf("create destination: %w", err)
		}
	}
	log.Info().Str("source", p.source).Str("dest", p.dest).Int("workers", cfg.Workers).Str("state_dir", p.stateDir).Msg("starting")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("listen on loopback: %w", err)
	}
	client, err := leaseapi.NewClient("http://"+ln.Addr().String(), leaseapi.ClientOptions{Token: token, GiveUpAfter: time.Minute})
	if err != nil {
		ln.Close()
		return res, err
	}

	start := time.Now()
	e := runAll(ctx, cfg, p, coord, ln, client, partsLog)
	res.Took = time.Since(start)
	res.Status = e.status
	if res.Status.Partitions.Total == 0 && res.Status.EntriesWalked == 0 {
		res.Status = coord.Status()
	}
	return res, outcome(ctx, e, res.Status, p.stateDir)
}

// ending is how the coordinator and the workers ended.
type ending struct {
	status   leaseapi.Status
	coordErr error
	// workerErr is the first error of a worker that stopped on its own (not by cancellation).
	workerErr error
}

// runAll runs the coordinator and the workers until the work is done, a worker stops on a
// fatal error, or ctx is cancelled. The coordinator outlives the workers so that stopping
// workers can hand their leases back to it.
func runAll(ctx context.Context, cfg Config, p plan, coord *coordinator.Coordinator, ln net.Listener,
	client *leaseapi.Client, log zerolog.Logger) ending {
	coordCtx, stopCoord := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCoord()
	stopCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()

	var e ending
	var all errgroup.Group // every goroutine of the run; none returns an error of its own
	coordDone := make(chan struct{})
	all.Go(func() error {
		defer close(coordDone)
		e.status, e.coordErr = coord.Run(coordCtx, ln)
		return nil
	})
	// The first worker that stops on its own error (not by cancellation) cancels workCtx:
	// the others would fail the same way, and hand their leases back.
	workers, workCtx := errgroup.WithContext(stopCtx)
	for i := range cfg.Workers {
		name := fmt.Sprintf("local-%d", i+1)
		workers.Go(func() error {
			err := worker.Run(workCtx, worker.Config{
				Client: client, Name: name, Source: p.source, Dest: p.dest,
				RsyncBinary: p.rsync, RsyncArgs: p.rsyncArgs, StopGrace: 2 * time.Second,
			}, log)
			if workCtx.Err() != nil {
				return nil
			}
			return err
		})
	}
	workersDone := make(chan struct{})
	all.Go(func() error {
		defer close(workersDone)
		e.workerErr = workers.Wait()
		return nil
	})
	stopBar := make(chan struct{})
	if cfg.Progress != nil {
		all.Go(func() error { showProgress(coord, cfg.Progress, stopBar); return nil })
	}

	select {
	case <-workersDone:
		// (workCtx itself ends with Wait, whatever happened.)
		if stopCtx.Err() != nil || e.workerErr != nil {
			stopCoord() // interrupted, or a worker failed: nobody is left to do the work
		}
	case <-coordDone:
		stopWorkers() // the coordinator has told the workers; stragglers need not wait
	}
	<-coordDone
	<-workersDone
	close(stopBar)
	_ = all.Wait()
	return e
}

// outcome turns how the run ended into Run's error.
func outcome(ctx context.Context, e ending, status leaseapi.Status, stateDir string) error {
	resume := fmt.Sprintf("state kept in %s; run the same command again to resume", stateDir)
	switch {
	case e.coordErr == nil && e.workerErr == nil:
		return nil
	case errors.Is(e.coordErr, coordinator.ErrInvalidConfig):
		// e.g. the state directory holds the journal of a copy to another destination.
		return invalidf("%w", e.coordErr)
	case ctx.Err() != nil:
		return interruptedError{msg: "interrupted; " + resume, err: ctx.Err()}
	case e.workerErr != nil:
		return fmt.Errorf("%w; %s", e.workerErr, resume)
	case errors.Is(e.coordErr, coordinator.ErrIncomplete):
		// The run is over, not interrupted: what failed (unreadable entries, walk errors)
		// needs a fix and a fresh walk, which skips what is already copied.
		return fmt.Errorf("%w (%d of %d partitions failed, %d walk errors); fix the cause and run again: the next run walks afresh and skips what is already copied",
			e.coordErr, status.Partitions.Failed, status.Partitions.Total, status.WalkErrors)
	default:
		return fmt.Errorf("%w; %s", e.coordErr, resume)
	}
}

// interruptedError reads as its message and unwraps to ErrInterrupted and the context's error.
type interruptedError struct {
	msg string
	err error
}

func (e interruptedError) Error() string   { return e.msg }
func (e interruptedError) Unwrap() []error { return []error{ErrInterrupted, e.err} }
