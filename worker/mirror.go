package worker

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/prune"
)

// mirrorStep is what a lease of a --mirror run does besides rsync, before it: a prune lease
// deletes the extraneous entries of its directories; a files lease removes the destination
// directories standing where the source now has a file, symlink or special file, so that
// rsync can put them in place. skipRsync is true for a prune lease and in a dry run, which
// copies nothing (and deletes nothing: it only logs and counts what would go).
func (w *worker) mirrorStep(ctx context.Context, l leaseapi.Lease, log zerolog.Logger) (deleted int64, skipRsync bool, err error) {
	m := l.Mirror
	if m == nil {
		return 0, false, nil
	}
	cfg := prune.Config{
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
	var res prune.Result
	switch l.Kind {
	case leaseapi.KindPrune:
		res, err = prune.Dirs(ctx, cfg, l.Paths())
		return res.Deleted, true, err
	case leaseapi.KindFiles:
		res, err = prune.MakeWay(ctx, cfg, l.Paths())
		return res.Deleted, m.DryRun, err
	}
	return 0, m.DryRun, nil
}
