package worker

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/prune"
	"github.com/krsync/krsync/rsyncexec"
)

// mirrorStep is what a lease of a --mirror run does besides rsync, before it: a prune lease
// deletes the extraneous entries of its directories; a files lease of a dry run counts the
// destination directories standing where the source now has a file, symlink or special file
// (a real run removes them in clearWay, once the unchanged entries are left out). skipRsync
// is true for a prune lease and in a dry run, which copies nothing (and deletes nothing: it
// only logs and counts what would go).
func (w *worker) mirrorStep(ctx context.Context, l leaseapi.Lease, log zerolog.Logger) (deleted int64, skipRsync bool, err error) {
	m := l.Mirror
	if m == nil {
		return 0, false, nil
	}
	var res prune.Result
	switch l.Kind {
	case leaseapi.KindPrune:
		res, err = prune.Dirs(ctx, w.pruneConfig(m, log), l.Paths())
		return res.Deleted, true, err
	case leaseapi.KindFiles:
		if m.DryRun {
			res, err = prune.MakeWay(ctx, w.pruneConfig(m, log), l.Paths())
		}
		return res.Deleted, m.DryRun, err
	}
	return 0, m.DryRun, nil
}

// clearWay removes, for a files lease of a --mirror run that copies, the destination
// directories standing where the source now holds something else (prune.MakeWay), so that
// rsync can put the prepared entries in place; it returns how many entries it deleted.
// Unchanged entries were left out of prep: they have nothing in their way, and a re-sync
// then pays no lookup for them.
func (w *worker) clearWay(ctx context.Context, l leaseapi.Lease, prep *rsyncexec.Prepared, log zerolog.Logger) (int64, error) {
	m := l.Mirror
	if m == nil || m.DryRun || l.Kind != leaseapi.KindFiles || prep.ToCopy() == 0 {
		return 0, nil
	}
	res, err := prune.MakeWay(ctx, w.pruneConfig(m, log), prep.Entries())
	return res.Deleted, err
}

// pruneConfig is the prune.Config of a lease's mirror settings.
func (w *worker) pruneConfig(m *leaseapi.Mirror, log zerolog.Logger) prune.Config {
	return prune.Config{
		Source: w.cfg.Source,
		Dest:   w.cfg.Dest,
		Filter: fpart.NewFilter(fpart.Options{
			Exclude: m.Exclude, ExcludeFold: m.ExcludeFold, Include: m.Include, IncludeFold: m.IncludeFold,
		}, m.WalkRoot),
		Keep:       m.Keep,
		KeepPrefix: m.KeepPrefix,
		DryRun:     m.DryRun,
		Deleted: func(rel string, isDir bool) {
			if m.DryRun {
				log.Info().Str("path", rel).Bool("dir", isDir).Msg("mirror: would delete")
			} else {
				log.Debug().Str("path", rel).Bool("dir", isDir).Msg("mirror: deleted")
			}
		},
	}
}
