package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/fpart"
)

// PartitionCmd is the `krsync partition` command: fpart(1) with krsync's partitioner.
// Kong passes every argument through unparsed (passthrough), so fpart's own syntax
// (-zz, -f1000, options after DIR) works as it does with fpart.
type PartitionCmd struct {
	Args []string `arg:"" optional:"" help:"fpart options and directories: [-f N] [-s SIZE] [-n N] [-L] [-z|-zz|-zzz] [-D] [-E] [-x PAT] [-X PAT] [-y PAT] [-Y PAT] [-b] [-0] [-e] [-o PREFIX] DIR..."`
}

const partitionUsage = `usage: krsync partition [fpart options] DIR...
  -f N       at most N entries per partition
  -s SIZE    at most SIZE bytes per partition (k, m, g, t, p suffixes: 512M, 10G)
  -n N       exactly N partitions balanced by size (not with -f, -s, -L)
  -L         live mode: print each partition as soon as it is full
  -z         pack empty directories; -zz also unreadable ones; -zzz every directory
  -D         pack leaf directories as single entries; -E pack directories only
  -x PAT     exclude a leaf name or path (shell glob); -X case-insensitive
  -y PAT     include only matching entries; -Y case-insensitive
  -b         do not cross file system boundaries
  -0         end entries with NUL; -e end directories with '/'
  -o PREFIX  write partitions to PREFIX.1, PREFIX.2 ... ("-" is stdout)
Hard-linked paths always share a partition; symbolic links are never followed.
`

// Run walks the directories and prints their partitions like fpart; unreadable
// directories are reported on stderr and, as with fpart, do not change the exit code.
func (c *PartitionCmd) Run(ctx context.Context, logger zerolog.Logger, streams Streams) error {
	for _, a := range c.Args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "--help" {
			_, err := fmt.Fprint(streams.Stdout, partitionUsage)
			return err
		}
	}
	opts, dirs, err := fpart.ParseArgs(c.Args)
	if err != nil {
		return usagef("partition: %v (see krsync partition -h)", trimUsage(err))
	}
	if err := opts.Validate(); err != nil {
		return usagef("partition: %v (see krsync partition -h)", trimUsage(err))
	}
	if len(dirs) == 0 {
		return usagef("partition: give at least one directory to partition")
	}
	for i := range dirs {
		dirs[i] = fpart.CleanRoot(dirs[i])
	}
	for _, dir := range dirs {
		info, err := os.Stat(dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return usagef("partition: %s: no such directory", dir)
		case err != nil:
			return usagef("partition: %v", err)
		case !info.IsDir():
			return usagef("partition: %s: not a directory (give directories to partition)", dir)
		}
	}
	if os.Getenv("GOGC") == "" {
		// The walk allocates a little per entry and keeps little: with the default GOGC the
		// collector runs every few MB and costs a third of the CPU; 400 halves that for
		// ~15 MB more RSS. This command owns the process, so it may set this.
		debug.SetGCPercent(400)
	}
	printer := fpart.NewPrinter(opts, dirs, streams.Stdout, streams.Stderr)
	summary, err := fpart.WalkRoots(ctx, dirs, opts, fpart.Handler{
		Partition: printer.Print,
		Error: func(rel string, err error) {
			// fpart's format: "path: error" on stderr.
			fmt.Fprintf(streams.Stderr, "%v\n", err)
		},
	})
	if err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	logger.Debug().Int("partitions", summary.Partitions).Int64("entries", summary.Entries).
		Int64("bytes", summary.Bytes).Int64("errors", summary.Errors).Msg("partition done")
	if summary.Errors > 0 {
		// Like fpart: reported on stderr, counted, and not fatal (exit 0).
		logger.Warn().Int64("errors", summary.Errors).Msg("partition: some entries could not be read (see above)")
	}
	return nil
}

// trimUsage drops the "usage: " prefix of fpart's option errors; usagef says it already.
func trimUsage(err error) string {
	msg := err.Error()
	prefix := fpart.ErrUsage.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}
