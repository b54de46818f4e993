package coordinator

import (
	"path/filepath"
	"slices"

	"github.com/krsync/krsync/leaseapi"
)

// pruneDirsPerPartition is how many directories one prune lease holds: each costs the
// worker two directory reads and a lookup per extraneous name, far less than a copy, so a
// lease holds many, but few enough that the pass spreads over the workers at the end of a
// run (2,000 left the 1,111 directories of the mirror bench's tree to one worker: paired
// runs with 250 took 0.92 of the time).
const pruneDirsPerPartition = 250

// mirrorMode is the part of the run's identity that --mirror and --dry-run add: a journal
// of a dry run must never be resumed by a run that copies (its partitions are "done"
// without having copied anything), nor a copy's by a mirror run (which would miss its
// prune leases).
func mirrorMode(cfg Config) string {
	switch {
	case cfg.Mirror && cfg.DryRun:
		return " mode=mirror-dry-run"
	case cfg.Mirror:
		return " mode=mirror"
	}
	return ""
}

// mirrorSpec is the Mirror every lease of a --mirror run carries (nil without --mirror):
// the walk's patterns, so that the workers delete nothing the walk leaves out, and the
// paths below the destination that krsync owns while the run lasts.
func mirrorSpec(cfg Config, tempDir string) *leaseapi.Mirror {
	if !cfg.Mirror {
		return nil
	}
	opts := cfg.Partitioner
	m := &leaseapi.Mirror{
		Exclude: slices.Clone(opts.Exclude), ExcludeFold: slices.Clone(opts.ExcludeFold),
		Include: slices.Clone(opts.Include), IncludeFold: slices.Clone(opts.IncludeFold),
		WalkRoot: cfg.Source,
		Keep:     []string{tempDir},
		// Each rsync run's temporary directory, TEMPDIR.LABEL-RANDOM (rsyncexec).
		KeepPrefix: []string{tempDir + "."},
		DryRun:     cfg.DryRun,
	}
	if cfg.StateDir != "" && cfg.Dest != "" {
		if rel, ok := below(cfg.StateDir, cfg.Dest); ok && rel != "." {
			m.Keep = append(m.Keep, filepath.ToSlash(rel))
		}
	}
	return m
}

// issuePrune adds the prune partitions of a --mirror run: every directory the walk kept,
// in the journal's order (parents first), pruneDirsPerPartition at a time. The walk calls
// it before it marks itself done, so that the directory pass, which sets the mtimes that
// deletions change, waits for them; a replayed walk adds the same partitions again, which
// the journal recognises by their lists.
func (c *Coordinator) issuePrune() error {
	n, err := c.leases.addDirPartitions(leaseapi.KindPrune, pruneDirsPerPartition)
	if err != nil {
		return err
	}
	c.log.Info().Int("partitions", n).Bool("dry_run", c.cfg.DryRun).Msg("mirror: prune pass issued")
	return nil
}
