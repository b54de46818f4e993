package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/local"
)

// LocalCmd is the `krsync local` command: a coordinator and N workers in one process
// (package local), talking over real HTTP on loopback, the same code paths as in Kubernetes.
type LocalCmd struct {
	Source            string        `help:"Directory to copy from." required:""`
	Dest              string        `help:"Directory to copy into; created when its parent exists." required:""`
	Workers           int           `help:"How many rsyncs run at once." default:"4"`
	FpartOpts         string        `help:"fpart options for the walk; without -f/-s/-n, live partitions of --files-per-partition entries." default:"${localFpartOptions}"`
	FilesPerPartition int64         `help:"Largest partition, in entries, when --fpart-opts has none of -f/-s/-n (the first ones hold 32 and they grow with the walk)." default:"${filesPerPartition}"`
	RsyncOpts         string        `help:"rsync options, split like a shell (default: ${rsyncOptions})."`
	Rsync             string        `help:"The rsync binary to run." default:"rsync"`
	StateDir          string        `help:"Where the journal lives, so an interrupted run resumes (default: under $XDG_STATE_HOME or ~/.local/state/krsync, outside the destination)."`
	LeaseTTL          time.Duration `help:"A lease not renewed for this long goes back to the queue." default:"30s"`
	MaxAttempts       int           `help:"Attempts per partition before it is reported failed." default:"3"`
	Progress          string        `help:"Progress bar: auto (on a terminal), always, never." default:"auto" enum:"auto,always,never"`
	Mirror            bool          `help:"Make the destination an exact copy: delete what it holds and the source does not (never what -x/-X exclude, never what the source gains meanwhile)."`
	DryRun            bool          `help:"With --mirror: copy nothing, delete nothing, log what --mirror would delete and count it."`

	// --verify, --verify-checksum, --summary-json (cmd_aftercopy.go).
	AfterCopy AfterCopyFlags `embed:""`
}

// Run copies the source into the destination with local.Run and prints a summary; exit 2
// for bad input (nothing written), 1 for an incomplete copy, 130 when interrupted.
func (c LocalCmd) Run(ctx context.Context, log zerolog.Logger, streams Streams) error {
	cfg := local.Config{
		Source: c.Source, Dest: c.Dest, Workers: c.Workers,
		FpartOpts: c.FpartOpts, FilesPerPartition: c.FilesPerPartition,
		RsyncOpts: c.RsyncOpts, Rsync: c.Rsync, StateDir: c.StateDir,
		LeaseTTL: c.LeaseTTL, MaxAttempts: c.MaxAttempts,
		Mirror: c.Mirror, DryRun: c.DryRun,
	}
	if err := c.AfterCopy.check(c.Source, c.Dest); err != nil {
		return err
	}
	if c.FilesPerPartition < 1 {
		return usagef("--files-per-partition %d: need at least 1", c.FilesPerPartition)
	}
	if c.Progress == "always" || (c.Progress == "auto" && streams.StderrIsTerminal) {
		cfg.Progress = streams.Stderr
	}
	var differences *diffLog
	cfg.Verify, differences = c.AfterCopy.verifyConfig(log)
	res, err := local.Run(ctx, cfg, log)
	began := res.Took > 0
	if began {
		summarize(log, streams, res, c.Workers)
		_, err = c.AfterCopy.finish(log, streams, copyRun{status: res.Status, took: res.Took, err: err,
			source: c.Source, dest: c.Dest, differences: differences})
	}
	switch {
	case errors.Is(err, local.ErrInvalidConfig):
		return usageError{err}
	case err == nil || errors.Is(err, local.ErrInterrupted) || !began:
		return err // 0; 130 through context.Canceled; 1 when the copy never began
	default:
		return exitStatus{1, err}
	}
}

// summarize reports the run: always as one log line with the numbers (JSON with
// --log-format=json), and on a terminal also as the status report krsync status prints.
func summarize(log zerolog.Logger, streams Streams, res local.Result, workers int) {
	st := res.Status
	ev := log.Info()
	switch {
	case st.Partitions.Failed > 0:
		ev = log.Warn()
	case streams.StderrIsTerminal:
		ev = log.Debug() // the prose below says it
	}
	ev.Int64("partitions_done", st.Partitions.Done).
		Int64("partitions_failed", st.Partitions.Failed).
		Int64("partitions_total", st.Partitions.Total).
		Int64("files_transferred", st.FilesTransferred).
		Int64("bytes_transferred", st.BytesTransferred).
		Int64("entries_walked", st.EntriesWalked).
		Int64("bytes_walked", st.BytesWalked).
		Int64("walk_errors", st.WalkErrors).
		Int64("vanished", st.Vanished).
		Int64("deleted", st.Deleted).
		Bool("dry_run", st.DryRun).
		Float64("duration_seconds", res.Took.Seconds()).
		Msg("summary")
	for _, f := range st.Failed {
		log.Warn().Int64("partition", f.Partition).Int("attempts", f.Attempts).Str("error", f.Error).
			Strs("failed_paths", f.FailedPaths).Msg("partition failed")
	}
	if streams.StderrIsTerminal {
		printReport(streams.Stderr, res, workers)
	}
}

// printReport prints the closing line on a terminal; the summary table follows
// (AfterCopyFlags.finish).
func printReport(w io.Writer, res local.Result, workers int) {
	fmt.Fprintf(w, "Synced in %s with %d workers.\n", res.Took.Round(time.Millisecond), workers)
}
