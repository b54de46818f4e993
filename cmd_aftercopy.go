package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/verify"
)

// AfterCopyFlags are what krsync local and krsync coordinator do once the copy has ended:
// compare the trees (--verify) and write the run's summary (--summary-json).
type AfterCopyFlags struct {
	Verify         bool   `help:"After a complete copy, compare the destination with the source as krsync verify does (metadata); exit 1 when they differ." group:"After the copy"`
	VerifyChecksum bool   `help:"Like --verify, and also compare the contents of regular files (reads every byte of both trees)." group:"After the copy"`
	SummaryJSON    string `help:"Write the run's summary to FILE as one JSON object (see README, Summary)." placeholder:"FILE" group:"After the copy"`
}

// verifyWorkers is the parallelism of --verify (krsync verify's default).
const verifyWorkers = verify.DefaultWorkers

// check refuses, before the copy, what --verify cannot honour: verify's --exclude takes
// fpart's -x patterns only, so a copy filtered by -X, -y or -Y would be reported different.
func (f AfterCopyFlags) check(fpartOpts string) ([]string, error) {
	if !f.Verify && !f.VerifyChecksum {
		return nil, nil
	}
	opts, err := fpart.ParseOptionString(fpartOpts)
	if err != nil {
		return nil, usagef("--fpart-opts: %v", err)
	}
	if len(opts.ExcludeFold)+len(opts.Include)+len(opts.IncludeFold) > 0 {
		return nil, usagef("--verify: --fpart-opts has -X, -y or -Y, which krsync verify cannot apply (it takes -x patterns only); drop --verify, or use -x")
	}
	return opts.Exclude, nil
}

// copyRun is a copy that has ended, as the after-copy steps need it.
type copyRun struct {
	status leaseapi.Status
	took   time.Duration
	err    error // the copy's own error; nil when complete
	// source and dest are the roots as the commands were given them; exclude are the walk's
	// -x patterns; stateDir is the journal's directory (left out of the comparison when it
	// lies in the destination).
	source, dest, stateDir string
	exclude                []string
}

// finish verifies a complete copy when asked, then builds the run's record and writes it
// (--summary-json; on a terminal the table goes to stderr). The error is the copy's, else
// the comparison's (an exitStatus 1 when the trees differ), else writing the summary's.
func (f AfterCopyFlags) finish(ctx context.Context, log zerolog.Logger, streams Streams, run copyRun) (leaseapi.Record, error) {
	rec := run.status.Record(run.took)
	rec.Complete = rec.Complete && run.err == nil
	err := run.err
	if (f.Verify || f.VerifyChecksum) && run.err == nil {
		var sum verify.Summary
		sum, err = compareTrees(ctx, log, verify.Config{
			Source: run.source, Dest: run.dest, Workers: verifyWorkers, Checksum: f.VerifyChecksum,
			Exclude: append(ownNames(run.source, run.dest, run.stateDir), run.exclude...),
		}, 20, nil, "")
		rec.Verify = &leaseapi.VerifyRecord{Checksum: f.VerifyChecksum, Entries: sum.Entries, Differences: sum.Differences}
		for kind, n := range sum.ByKind {
			if rec.Verify.ByKind == nil {
				rec.Verify.ByKind = map[string]int64{}
			}
			rec.Verify.ByKind[string(kind)] = n
		}
		rec.Complete = rec.Complete && err == nil
	}
	if streams.StderrIsTerminal {
		fmt.Fprint(streams.Stderr, rec.Table())
	}
	if f.SummaryJSON != "" {
		if werr := writeSummaryJSON(f.SummaryJSON, rec); werr != nil {
			log.Error().Err(werr).Msg("--summary-json")
			if err == nil {
				err = exitStatus{code: 1, err: werr}
			}
		}
	}
	return rec, err
}

// ownNames are exclude patterns for what krsync itself may leave in the destination: the
// run's temporary directory at the top (removed at the end of a complete run, but a
// concurrent run of another identity may hold one), and the state directory when it lies
// in the destination (it keeps a generated token). They are path patterns anchored at the
// source root as verify matches them (SOURCE/rel), with the root's glob characters quoted.
func ownNames(source, dest, stateDir string) []string {
	root := globQuote(strings.TrimRight(source, "/"))
	if root == "" {
		root = "/"
	} else {
		root += "/"
	}
	names := []string{root + coordinator.TempDirPrefix + "*"}
	if stateDir == "" {
		return names
	}
	absState, err1 := filepath.Abs(stateDir)
	absDest, err2 := filepath.Abs(dest)
	if err1 != nil || err2 != nil {
		return names
	}
	if rel, err := filepath.Rel(absDest, absState); err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../") {
		names = append(names, root+globQuote(rel))
	}
	return names
}

// globQuote quotes fnmatch's special characters with a backslash.
func globQuote(s string) string {
	var b strings.Builder
	for i := range len(s) { // bytes: a name need not be UTF-8
		if strings.IndexByte(`\*?[`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// writeSummaryJSON writes rec to path as one indented JSON object, whole or not at all.
func writeSummaryJSON(path string, rec leaseapi.Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("--summary-json: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--summary-json: %w", err)
	}
	return nil
}
