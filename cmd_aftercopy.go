package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/pathcheck"
	"github.com/krsync/krsync/verify"
)

// AfterCopyFlags are what krsync local and krsync coordinator do once the copy has ended:
// compare the trees (--verify) and write the run's summary (--summary-json).
type AfterCopyFlags struct {
	Verify         bool   `help:"After a complete copy, compare the destination with the source as krsync verify does (metadata), spread over the workers in verify leases; exit 1 when they differ." group:"After the copy"`
	VerifyChecksum bool   `help:"Like --verify, and also compare the contents of regular files (reads every byte of both trees)." group:"After the copy"`
	SummaryJSON    string `help:"Write the run's summary to FILE as one JSON object (see README, Summary)." placeholder:"FILE" group:"After the copy"`
}

// check refuses, before the copy, a --summary-json that could not be written after it (a
// directory, or a file in a directory that does not exist) or that would land in the source
// (never written to) or in the destination (which must end equal to the source).
func (f AfterCopyFlags) check(source, dest string) error {
	if f.SummaryJSON == "" {
		return nil
	}
	if abs, err := filepath.Abs(filepath.Dir(f.SummaryJSON)); err == nil {
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			for _, root := range []struct{ flag, dir string }{{"--source", source}, {"--dest", dest}} {
				if r, err := filepath.EvalSymlinks(root.dir); err == nil && pathcheck.Within(real, r) {
					return usagef("--summary-json %s lies inside %s %s: write it elsewhere", f.SummaryJSON, root.flag, root.dir)
				}
			}
		}
	}
	if fi, err := os.Stat(f.SummaryJSON); err == nil && fi.IsDir() {
		return usagef("--summary-json %s is a directory: name a file", f.SummaryJSON)
	}
	dir := filepath.Dir(f.SummaryJSON)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usagef("--summary-json %s: its directory %s does not exist", f.SummaryJSON, dir)
	}
	return nil
}

// verifyShow is how many differences the log of --verify lists (krsync verify's --show default).
const verifyShow = 20

// verifyConfig is the coordinator's comparison for --verify and --verify-checksum (nil
// without), and the log its differences go to as the workers find them.
func (f AfterCopyFlags) verifyConfig(log zerolog.Logger) (*coordinator.VerifyConfig, *diffLog) {
	if !f.Verify && !f.VerifyChecksum {
		return nil, nil
	}
	out := &diffLog{log: log, show: verifyShow}
	return &coordinator.VerifyConfig{
		Checksum: f.VerifyChecksum,
		Report:   func(d verify.Difference) { _ = out.add(d) },
	}, out
}

// copyRun is a copy that has ended, as the after-copy steps need it.
type copyRun struct {
	status leaseapi.Status
	took   time.Duration
	err    error // the copy's own error; nil when complete
	// source and dest are the roots as the commands were given them.
	source, dest string
	// differences is where --verify's differences were logged (nil without --verify).
	differences *diffLog
}

// finish closes the comparison of --verify, which the workers ran after the copy (its
// outcome is in the status), then builds the run's record and writes it (--summary-json; on
// a terminal the table goes to stderr). The error is the copy's, else the comparison's (an
// exitStatus 1 when the trees differ), else writing the summary's.
func (f AfterCopyFlags) finish(log zerolog.Logger, streams Streams, run copyRun) (leaseapi.Record, error) {
	rec := run.status.Record(run.took)
	rec.Complete = rec.Complete && run.err == nil
	err := run.err
	if v := run.status.Verify; run.differences != nil && run.err == nil {
		if v == nil || v.State != leaseapi.VerifyDone {
			err = exitStatus{code: 1, err: errors.New("verify: the comparison did not run to its end")}
		} else {
			sum := verify.Summary{Entries: v.Entries, Dirs: v.DirsDone, ContentBytes: v.ContentBytes, Differences: v.Differences, ByKind: map[verify.Kind]int64{}}
			for kind, n := range v.ByKind {
				sum.ByKind[verify.Kind(kind)] = n
			}
			err = run.differences.end(sum, nil, run.source, run.dest)
			rec.Verify = &leaseapi.VerifyRecord{Checksum: v.Checksum, Entries: v.Entries, Differences: v.Differences, ByKind: v.ByKind}
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
