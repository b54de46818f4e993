package worker

import (
	"context"
	"errors"
	"sync"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/rsyncexec"
)

// A re-sync leaves little to copy in most partitions: one rsync per partition then costs
// more than its copying, chiefly rsync's own start and end (three processes, and a 20 ms
// sleep in each of its two waits for a child: main.c, wait_process_with_flush). The worker
// therefore gathers, into one rsync run, file leases of which little is left once the
// unchanged entries are out, and only those: a first copy (nothing unchanged) keeps one run
// per partition, so partitions stay spread over the workers.
const (
	// batchMaxEntries bounds the entries one gathered run copies.
	batchMaxEntries = 256
	// batchSparse is how many listed entries each entry to copy must stand for (at least)
	// for a lease to be gathered: at most 1 in 8 changed.
	batchSparse = 8
	// batchMaxLeases bounds the leases one run holds.
	batchMaxLeases = 16
)

// runGranted runs a lease just granted: alone, or with more file leases gathered (see above).
func (w *worker) runGranted(ctx context.Context, l leaseapi.Lease) error {
	if !gatherable(l) {
		return w.runLease(ctx, l, nil)
	}
	log := w.leaseLog(l)
	log.Debug().Int64("entries", l.Entries).Int64("bytes", l.Bytes).Msg("leased")
	if err := w.checkSource(l); err != nil {
		w.handBack(ctx, l, log)
		return err
	}
	g := &gathering{w: w}
	g.ctx, g.stop = context.WithCancelCause(ctx)
	defer g.stop(nil)
	prep, err := rsyncexec.Prepare(w.job(l, &log))
	if err != nil {
		g.end()
		return w.runLease(ctx, l, nil) // fails it, with the reasons runLease knows
	}
	g.add(l, prep, log)       // the first always joins
	var after *leaseapi.Lease // a lease that cannot join, run next
	for g.wantsMore() {
		resp, err := w.cfg.Client.Lease(g.ctx, w.cfg.Name, 0)
		if err != nil || resp.State != leaseapi.LeaseGranted {
			break // the loop's next request reports errors and waits
		}
		next := *resp.Lease
		if !gatherable(next) {
			after = &next
			g.renew(next, w.leaseLog(next))
			break
		}
		nlog := w.leaseLog(next)
		nlog.Debug().Int64("entries", next.Entries).Int64("bytes", next.Bytes).Msg("leased")
		nprep, err := rsyncexec.Prepare(w.job(next, &nlog))
		if err == nil {
			err = g.add(next, nprep, nlog)
		}
		if err != nil {
			after = &next // runLease judges it alone
			g.renew(next, nlog)
			break
		}
	}
	err = g.run(ctx)
	if err == nil && after != nil {
		return w.runLease(ctx, *after, nil)
	}
	return err
}

// gatherable says whether a lease's rsync run may be shared: a file lease that copies (a dry
// run copies nothing) and removes nothing of krsync's.
func gatherable(l leaseapi.Lease) bool {
	return l.Kind == leaseapi.KindFiles && !l.RemoveTempDir && (l.Mirror == nil || !l.Mirror.DryRun)
}

func (w *worker) leaseLog(l leaseapi.Lease) zerolog.Logger {
	return w.log.With().Int64("partition", l.Partition).Int("attempt", l.Attempt).Str("kind", string(l.Kind)).Logger()
}

// gathering is the leases one rsync run is to copy, each renewed from the moment it is held.
type gathering struct {
	w        *worker
	ctx      context.Context
	stop     context.CancelCauseFunc
	renewing sync.WaitGroup
	leases   []leaseapi.Lease
	logs     []zerolog.Logger
	preps    []*rsyncexec.Prepared
	merged   *rsyncexec.Prepared
}

func (g *gathering) renew(l leaseapi.Lease, log zerolog.Logger) {
	g.renewing.Go(func() { g.w.renew(g.ctx, l, g.stop, log) })
}

// add joins a lease to the run (the first always joins) and renews it.
func (g *gathering) add(l leaseapi.Lease, prep *rsyncexec.Prepared, log zerolog.Logger) error {
	if g.merged == nil {
		// A copy of the first: Join must not change what that lease alone would run.
		first := *prep
		g.merged = &first
	} else if err := g.merged.Join(prep); err != nil {
		return err
	}
	g.renew(l, log)
	g.leases, g.logs, g.preps = append(g.leases, l), append(g.logs, log), append(g.preps, prep)
	return nil
}

// wantsMore says whether the run so far is small and sparse enough to take another lease.
func (g *gathering) wantsMore() bool {
	m := g.merged
	return g.ctx.Err() == nil && len(g.leases) < batchMaxLeases && m.ToCopy() < batchMaxEntries &&
		m.ToCopy()*batchSparse <= m.Listed()
}

// end stops the renewals of every lease held.
func (g *gathering) end() {
	g.stop(errRsyncEnded)
	g.renewing.Wait()
}

// run copies the gathered leases: one alone takes the ordinary path with its prepared job;
// several share one rsync run and are completed one by one. When the shared run fails, each
// lease runs again alone, so that failures, failed paths and retries are judged per
// partition as always (what was copied is unchanged the second time and costs a lookup).
func (g *gathering) run(ctx context.Context) error {
	w := g.w
	if len(g.leases) == 1 {
		g.end()
		return w.runLease(ctx, g.leases[0], g.preps[0])
	}
	first, log := g.leases[0], g.logs[0]
	log.Debug().Int("leases", len(g.leases)).Int("entries", g.merged.ToCopy()).Msg("one rsync run for several leases")
	rootsErr := w.checkRoots()
	var deleted int64
	var res rsyncexec.Result
	runErr := rootsErr
	if runErr == nil {
		deleted, runErr = w.clearWay(g.ctx, first, g.merged, log)
	}
	if runErr == nil {
		res, runErr = g.merged.Run(g.ctx)
	}
	if rootsErr == nil {
		rootsErr = w.checkRoots()
	}
	cause := context.Cause(g.ctx)
	g.end()
	if rootsErr != nil {
		// Nothing of these leases counts as done: see checkRoots.
		for i, l := range g.leases {
			w.handBack(ctx, l, g.logs[i])
		}
		return rootsErr
	}
	if runErr == nil && res.VanishedCount >= 2 {
		runErr = errors.New("entries vanished: judged per partition") // see mostlyVanished
	}
	switch {
	case runErr == nil:
		for i, l := range g.leases {
			one := rsyncexec.Result{Unchanged: g.preps[i].Unchanged(), ExitCode: res.ExitCode}
			oneDeleted := int64(0)
			if i == 0 {
				// rsync counts for the whole run: the first lease reports it all.
				one, oneDeleted = res, deleted
				one.Unchanged = g.preps[0].Unchanged()
			}
			if err := w.complete(ctx, l, one, oneDeleted, g.logs[i]); err != nil {
				return g.handBackRest(ctx, i+1, err)
			}
		}
		return nil
	case ctx.Err() != nil:
		w.handBack(ctx, first, log)
		return w.stopped(ctx)
	}
	log.Debug().Err(runErr).AnErr("cause", cause).Msg("shared rsync run failed; each lease runs alone")
	for i, l := range g.leases {
		if err := w.runLease(ctx, l, nil); err != nil {
			return g.handBackRest(ctx, i+1, err)
		}
	}
	return nil
}

// handBackRest hands back the leases from i on (the worker stops with err) and returns err.
func (g *gathering) handBackRest(ctx context.Context, i int, err error) error {
	if i < len(g.leases) {
		g.w.handBack(ctx, g.leases[i], g.logs[i])
	}
	return err
}
