package coordinator

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/krsync/krsync/fpart"
)

// DefaultFilesPerPartition is the live partition size when the fpart options give none of
// -f, -s or -n: big enough that rsync's start-up cost is small against its work, small
// enough that workers get partitions early in the walk.
const DefaultFilesPerPartition = 2000

// LiveDefaults returns opts in live mode with filesPerPartition entries per partition when
// opts chose no partitioning (none of -f, -s, -n); otherwise opts unchanged, so that an
// fpsync user's -n or non-live -f keeps fpart's meaning.
func LiveDefaults(opts fpart.Options, filesPerPartition int64) fpart.Options {
	if opts.MaxFiles > 0 || opts.MaxBytes > 0 || opts.Parts > 0 {
		return opts
	}
	if filesPerPartition <= 0 {
		filesPerPartition = DefaultFilesPerPartition
	}
	opts.MaxFiles = filesPerPartition
	opts.Live = true
	return opts
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
	opts.Readers, opts.NulTerminated, opts.TrailingSlash, opts.Output = 0, false, false, ""
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
