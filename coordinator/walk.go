package coordinator

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/krsync/krsync/fpart"
)

// DefaultFilesPerPartition is the largest live partition when the fpart options give none of
// -f, -s or -n: big enough that rsync's start-up cost is small against its work.
const DefaultFilesPerPartition = 2000

// SpreadPerWorker sets the live partitions' growth (fpart.Options.Spread) from the number of
// workers: a partition holds at most 1/(SpreadPerWorker × workers) of the entries walked
// before it, so the last partitions leave each worker several to take, and the first ones
// (fpart.MinSpreadFiles entries) reach every worker while the walk has just begun.
const SpreadPerWorker = 4

// LiveDefaults returns opts in live mode when opts chose no partitioning (none of -f, -s,
// -n): partitions start small and grow with the walk up to filesPerPartition entries, spread
// for the given number of workers. Otherwise opts are returned unchanged, so that an fpsync
// user's -n or fixed -f keeps fpart's meaning.
func LiveDefaults(opts fpart.Options, filesPerPartition int64, workers int) fpart.Options {
	if opts.MaxFiles > 0 || opts.MaxBytes > 0 || opts.Parts > 0 {
		return opts
	}
	if filesPerPartition <= 0 {
		filesPerPartition = DefaultFilesPerPartition
	}
	opts.MaxFiles = filesPerPartition
	opts.Live = true
	opts.Spread = SpreadPerWorker * int64(max(workers, 1))
	return opts
}

// ParsePartitioner parses an --fpart-opts string, applies LiveDefaults and validates the
// result: the walk's options as every command that starts a coordinator takes them.
func ParsePartitioner(fpartOpts string, filesPerPartition int64, workers int) (fpart.Options, error) {
	opts, err := fpart.ParseOptionString(fpartOpts)
	if err != nil {
		return fpart.Options{}, err
	}
	opts = LiveDefaults(opts, filesPerPartition, workers)
	if err := opts.Validate(); err != nil {
		return fpart.Options{}, err
	}
	return opts, nil
}

// FpartWalk walks root with fpart's options: the coordinator's default WalkFunc.
func FpartWalk(root string, opts fpart.Options) WalkFunc {
	return func(ctx context.Context, h WalkHandler) error {
		_, err := fpart.Walk(ctx, root, opts, fpart.Handler{
			Partition: func(p fpart.Partition) error {
				return h.Partition(WalkPartition{List: p.List(), Entries: int64(len(p.Entries)), Bytes: p.Bytes})
			},
			Dir:   h.Dir,
			Error: h.Error,
		})
		return err
	}
}

// defaultIdentity names a run by its absolute source and destination, the volumes behind
// them, and the partitioner options that decide what the partitions hold (not the
// read-ahead, not fpart's output format), so a coordinator rescheduled on another node with
// other defaults still resumes, and a journal of a copy to another destination (whose
// finished partitions say nothing about this one) is refused.
func defaultIdentity(source, dest, volumes string, opts fpart.Options) string {
	// Spread follows the number of workers: a rerun with more workers resumes the same
	// journal (a replayed walk then cuts other partitions, whose entries are copied again,
	// which rsync makes harmless).
	opts.Readers, opts.Spread, opts.NulTerminated, opts.TrailingSlash, opts.Output = 0, 0, false, false, ""
	return fmt.Sprintf("source=%q dest=%q volumes=%q fpart=%+v", absPath(source), absPath(dest), volumes, opts)
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return abs
}
