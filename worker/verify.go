package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/verify"
)

// errVerifyEnded stops the renewals of a verify lease once the comparison has returned.
var errVerifyEnded = errors.New("comparison ended")

// runVerify compares the directories of a verify lease (--verify) with package verify, the
// independent witness, and reports what differs: the counts, the first
// leaseapi.MaxVerifyListed differences, and every multiply-linked name it met, whose
// grouping the coordinator judges across the whole tree. It writes nothing anywhere.
func (w *worker) runVerify(ctx context.Context, l leaseapi.Lease, log zerolog.Logger) error {
	if l.Verify == nil {
		return w.failVerify(ctx, l, errors.New("verify lease without its settings (a coordinator of another version?)"), false, log)
	}
	verifyCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var renewing sync.WaitGroup
	renewing.Go(func() { w.renew(verifyCtx, l, stop, log) })
	rep := leaseapi.VerifyReport{ByKind: map[string]int64{}}
	res, err := verify.Dirs(verifyCtx, verify.Config{
		Source: w.cfg.Source, Dest: w.cfg.Dest, Workers: verify.DefaultWorkers,
		Checksum: l.Verify.Checksum, Exclude: l.Verify.Exclude, ExcludeRoot: l.Verify.WalkRoot,
		Report: func(d verify.Difference) error { // one call at a time
			if len(rep.Listed) < leaseapi.MaxVerifyListed {
				rep.Listed = append(rep.Listed, leaseapi.VerifyDifference{
					Path: []byte(d.Path), Kind: string(d.Kind), Source: []byte(d.Source), Dest: []byte(d.Dest)})
			}
			return nil
		},
	}, l.Paths())
	stop(errVerifyEnded)
	renewing.Wait()

	switch cause := context.Cause(verifyCtx); {
	case err == nil:
	case ctx.Err() != nil:
		w.handBack(ctx, l, log)
		return w.stopped(ctx)
	case errors.Is(cause, leaseapi.ErrStaleLease), errors.Is(cause, leaseapi.ErrUnknownPartition):
		log.Warn().Err(cause).Msg("lease lost while comparing; moving on")
		return nil
	default:
		// A root that cannot be opened: maybe this worker's mounts; another may do.
		return w.failVerify(ctx, l, err, true, log)
	}
	rep.Dirs, rep.Entries, rep.ContentBytes, rep.Differences = res.Dirs, res.Entries, res.ContentBytes, res.Differences
	for kind, n := range res.ByKind {
		rep.ByKind[string(kind)] = n
	}
	for _, n := range res.Links {
		link := leaseapi.VerifyLink{Path: []byte(n.Path), Compared: n.Compared}
		if n.InSource {
			link.Source = &leaseapi.VerifyInode{Dev: n.Source.Dev, Ino: n.Source.Ino}
		}
		if n.InDest {
			link.Dest = &leaseapi.VerifyInode{Dev: n.Dest.Dev, Ino: n.Dest.Ino}
		}
		rep.Links = append(rep.Links, link)
	}

	return w.sendCompletion(ctx, l, leaseapi.TransferStats{Verify: &rep}, log, func() {
		log.Debug().Int64("dirs", rep.Dirs).Int64("entries", rep.Entries).Int64("differences", rep.Differences).Msg("verify lease done")
	})
}

// failVerify reports a verify lease that could not be compared; the worker goes on.
func (w *worker) failVerify(ctx context.Context, l leaseapi.Lease, cause error, retryable bool, log zerolog.Logger) error {
	return w.refuse(ctx, l, leaseapi.FailRequest{Token: l.Token, Error: leaseapi.OneLine(cause.Error()), Retryable: retryable}, log)
}

// refuseKind fails a lease of a kind this worker does not know, rather than run it as
// something else: a coordinator of a newer version may hand out work an older worker
// cannot do. Retryable, so that a worker that knows the kind may take it; the worker goes
// on with other leases.
func (w *worker) refuseKind(ctx context.Context, l leaseapi.Lease, log zerolog.Logger) error {
	msg := fmt.Sprintf("worker %s does not know lease kind %q: run workers of the coordinator's version", w.cfg.Name, l.Kind)
	return w.refuse(ctx, l, leaseapi.FailRequest{Token: l.Token, Error: msg, Retryable: true}, log)
}

// refuse sends a failure report that ends a lease without rsync.
func (w *worker) refuse(ctx context.Context, l leaseapi.Lease, req leaseapi.FailRequest, log zerolog.Logger) error {
	reportCtx, cancel := w.reportContext(ctx)
	defer cancel()
	if err := w.cfg.Client.Fail(reportCtx, l.Partition, req); err != nil &&
		!errors.Is(err, leaseapi.ErrStaleLease) && !errors.Is(err, leaseapi.ErrUnknownPartition) {
		return fmt.Errorf("worker %s: %w", w.cfg.Name, err)
	}
	log.Warn().Str("error", req.Error).Bool("retryable", req.Retryable).Msg("partition failed")
	if ctx.Err() != nil {
		return w.stopped(ctx)
	}
	return nil
}
