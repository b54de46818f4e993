package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
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

// CopyableOptions refuses the fpart options whose partitions a copy cannot take: -D and -E
// pack a directory as one entry standing for its files, which fpsync copies with a
// recursive rsync; krsync copies every entry as listed (a directory as itself), so its files
// would be left behind with exit 0. krsync partition takes them: it only prints.
func CopyableOptions(opts fpart.Options) error {
	switch {
	case opts.DirsOnly:
		return errors.New("-E packs directories instead of their files, and krsync copies each entry as listed: leave it out (krsync's partitions are live and hard-link safe without it)")
	case opts.LeafDirs:
		return errors.New("-D packs a directory instead of its files, and krsync copies each entry as listed: leave it out")
	}
	return nil
}

// CheckRootNotExcluded refuses options whose -x/-X match the source root's own name: fpart
// applies them to the root too, so the walk would list nothing and the copy end 0 empty.
func CheckRootNotExcluded(opts fpart.Options, source string) error {
	if fpart.NewFilter(opts, source).SkipsRoot() {
		return fmt.Errorf("an -x/-X pattern matches the source %s itself, so nothing would be copied: make the pattern a path (-x sub/name) or narrower", source)
	}
	return nil
}

// ParsePartitioner parses an --fpart-opts string, applies LiveDefaults and validates the
// result: the walk's options as every command that starts a coordinator takes them.
func ParsePartitioner(fpartOpts string, filesPerPartition int64, workers int) (fpart.Options, error) {
	opts, err := fpart.ParseOptionString(fpartOpts)
	if err != nil {
		return fpart.Options{}, err
	}
	if err := CopyableOptions(opts); err != nil {
		return fpart.Options{}, err
	}
	opts = LiveDefaults(opts, filesPerPartition, workers)
	if err := opts.Validate(); err != nil {
		return fpart.Options{}, err
	}
	return opts, nil
}

// FpartWalk walks root with fpart's options: the coordinator's default WalkFunc. With
// compare (Config.CompareDest), the entries it calls unchanged go to h.Unchanged instead of
// a partition.
func FpartWalk(root string, compare DestComparer, opts fpart.Options) WalkFunc {
	return func(ctx context.Context, h WalkHandler) error {
		fh := fpart.Handler{
			Partition: func(p fpart.Partition) error {
				return h.Partition(WalkPartition{List: p.List(), Entries: int64(len(p.Entries)), Bytes: p.Bytes})
			},
			Dir:   h.Dir,
			Error: h.Error,
		}
		if compare != nil {
			fh.Compare = func(_ int, rel string) (fpart.SameFunc, func()) {
				same, done := compare(rel)
				return same, done
			}
			fh.Unchanged = func(_ string, size int64) {
				if h.Unchanged != nil {
					h.Unchanged(size)
				}
			}
		}
		_, err := fpart.Walk(ctx, root, opts, fh)
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

// dirFlush is how many walked directories are buffered before they go to the journal.
const dirFlush = 10000

// walkBatchMax bounds how many walk items one journal commit takes.
const walkBatchMax = 1024

// walkItem is what the walk hands to the journal writer: a partition, or directories.
type walkItem struct {
	part WalkPartition // List is nil when the item carries directories only
	dirs []string
}

// walk runs the walk and records its partitions and directories through a journal writer
// goroutine that commits whatever has queued up in one transaction (group commit): a
// slow walk gets each partition journaled and leasable at once, a fast one is not held
// back by one commit per partition.
func (c *Coordinator) walk(ctx context.Context) error {
	items := make(chan walkItem, walkBatchMax)
	writerDone := make(chan struct{})
	var writerErr error
	var replayed int64
	go func() {
		defer close(writerDone)
		replayed, writerErr = c.journalWalk(items)
	}()
	send := func(it walkItem) error {
		select {
		case items <- it:
			return nil
		case <-writerDone:
			return errors.New("journal writer stopped")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var dirs []string
	var totals walkTotals
	h := WalkHandler{
		Unchanged: func(size int64) {
			totals.unchanged++
			totals.unchangedBytes += size
			c.leases.addUnchanged(1, size)
		},
		Partition: func(p WalkPartition) error {
			if len(p.List) == 0 {
				return nil
			}
			return send(walkItem{part: p})
		},
		Dir: func(rel string) error {
			dirs = append(dirs, rel)
			if len(dirs) >= dirFlush {
				err := send(walkItem{dirs: dirs})
				dirs = nil
				return err
			}
			return nil
		},
		Error: func(rel string, err error) {
			if errors.Is(err, fs.ErrNotExist) {
				// Listed by readdir, gone by lstat or open: deleted during the walk, as
				// happens on a live volume. Like rsync's "vanished" files: not an error.
				totals.vanished++
				c.leases.addVanished()
				c.log.Info().Str("path", rel).Err(err).Msg("vanished during the walk")
				return
			}
			totals.errors++
			c.leases.addWalkError()
			c.log.Warn().Str("path", rel).Err(err).Msg("walk")
		},
	}
	err := c.cfg.Walk(ctx, h)
	if err == nil && len(dirs) > 0 {
		err = send(walkItem{dirs: dirs})
	}
	close(items)
	<-writerDone
	switch {
	case writerErr != nil:
		return writerErr
	case err != nil && ctx.Err() != nil:
		return nil // the run is ending anyway
	case err != nil:
		return fmt.Errorf("walk %s: %w", c.cfg.Source, err)
	}
	if c.cfg.Mirror {
		// Before the walk is done in the queue, so that the directory pass waits for them.
		if err := c.issuePrune(); err != nil {
			return err
		}
	}
	if err := c.leases.walkDone(totals); err != nil {
		return err
	}
	ev := c.log.Info().Int64("walk_errors", totals.errors).Int64("vanished", totals.vanished)
	if totals.unchanged > 0 {
		ev = ev.Int64("unchanged", totals.unchanged)
	}
	if replayed > 0 {
		ev = ev.Int64("replayed_partitions", replayed)
	}
	ev.Msg("walk done")
	return nil
}

// journalWalk commits the walk's items in groups and queues the new partitions. It returns
// how many partitions were already in the journal (a replayed walk).
func (c *Coordinator) journalWalk(items <-chan walkItem) (replayed int64, err error) {
	var parts []WalkPartition
	var dirs []string
	for it := range items {
		parts, dirs = parts[:0], dirs[:0]
		for n := 0; ; n++ {
			if it.part.List != nil {
				parts = append(parts, it.part)
			}
			dirs = append(dirs, it.dirs...)
			if n == walkBatchMax {
				break
			}
			var ok bool
			select {
			case it, ok = <-items:
			default:
			}
			if !ok {
				break
			}
		}
		n, err := c.leases.addWalked(parts, dirs)
		replayed += n
		if err != nil {
			return replayed, err
		}
	}
	return replayed, nil
}

// issueDirs adds the directory-metadata partitions, once every file partition is settled.
func (c *Coordinator) issueDirs() error {
	n, err := c.leases.addDirPartitions(leaseapi.KindDirs, c.cfg.DirsPerPartition)
	if err != nil {
		return err
	}
	if err := c.leases.dirsIssued(); err != nil {
		return err
	}
	c.log.Info().Int("partitions", n).Msg("directory-metadata pass issued")
	return nil
}
