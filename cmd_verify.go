package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/verify"
)

// VerifyCmd is the `krsync verify` command: compare a copy with its source, independently of
// the copy path, and exit 0 when they are equal, 1 when they differ (or cannot be compared
// in full), 2 on bad input. It runs in one process, the witness on its own; --verify after
// a copy spreads the same comparison over the workers.
type VerifyCmd struct {
	Source   string   `help:"The tree that was copied." required:""`
	Dest     string   `help:"The copy to check against it." required:""`
	Workers  int      `help:"Directories read and files compared at once." default:"4"`
	Checksum bool     `help:"Also compare the contents of regular files of equal size (reads every byte of both trees)."`
	Exclude  []string `help:"Leave out entries matching PATTERN on both sides, as fpart -x: a leaf name, or a path when it holds '/' (shell glob, a leading '.' only matched by '.'); repeatable." placeholder:"PATTERN" sep:"none"`
	Report   string   `help:"Write every difference to FILE as JSON lines ({\"path\",\"kind\",\"source\",\"dest\"}; see README, Verify)." placeholder:"FILE"`
	Show     int      `help:"How many differences the log lists; the others are counted (--report has them all)." default:"20"`
}

// Help is krsync verify --help's text below the usage line.
func (c VerifyCmd) Help() string {
	return "krsync verify runs in one process, with --workers goroutines: it is the witness on its own, " +
		"sharing nothing with the copy. --verify and --verify-checksum of krsync local and krsync coordinator " +
		"run the same comparison spread over the copy's workers (in Kubernetes, the worker Job)."
}

// Run compares the trees and maps the outcome to an exit code: differences (and entries
// that could not be read) are exit 1, in one line that counts them by kind.
func (c VerifyCmd) Run(ctx context.Context, log zerolog.Logger, streams Streams) error {
	if err := c.check(); err != nil {
		return err
	}
	report, err := c.openReport()
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// As in `krsync partition`: the walk allocates a little per entry and keeps little.
		debug.SetGCPercent(400)
	}
	log.Info().Str("source", c.Source).Str("dest", c.Dest).Int("workers", c.Workers).
		Bool("checksum", c.Checksum).Strs("exclude", c.Exclude).Msg("verify: comparing")
	_, err = compareTrees(ctx, log, verify.Config{
		Source: c.Source, Dest: c.Dest, Workers: c.Workers, Checksum: c.Checksum, Exclude: c.Exclude,
	}, c.Show, report, c.Report)
	return err
}

// compareTrees runs verify.Run with krsync verify's reporting (diffLog): the first show
// differences in the log, every one to report as JSON lines when report is not nil (closed
// here; reportName names it in messages), a closing line. The error is an exitStatus 1 when
// the trees differ, in one line that counts the differences by kind.
func compareTrees(ctx context.Context, log zerolog.Logger, cfg verify.Config, show int, report *os.File, reportName string) (verify.Summary, error) {
	out := &diffLog{log: log, show: show, report: report, reportName: reportName}
	if report != nil {
		out.out = bufio.NewWriterSize(report, 256<<10)
	}
	cfg.Report = out.add
	sum, runErr := verify.Run(ctx, cfg)
	return sum, out.end(sum, runErr, cfg.Source, cfg.Dest)
}

// diffLog is the one reporting of a comparison, krsync verify's and --verify's (whose
// workers compare, and whose coordinator passes the differences on): the first show
// differences in the log, every one to the report file when there is one, and a closing
// line and error from end. add is called one difference at a time.
type diffLog struct {
	log        zerolog.Logger
	show       int
	shown      int
	out        *bufio.Writer // on report, when there is one
	report     *os.File
	reportName string
}

func (r *diffLog) add(d verify.Difference) error {
	if r.shown < r.show {
		r.shown++
		r.log.Warn().Str("kind", string(d.Kind)).Str("path", verify.Printable(d.Path)).
			Str("source", verify.Printable(d.Source)).Str("dest", verify.Printable(d.Dest)).Msg("difference")
	}
	if r.out == nil {
		return nil
	}
	line, err := json.Marshal(d)
	if err != nil {
		return err
	}
	r.out.Write(line)
	return r.out.WriteByte('\n')
}

// end closes the report and says how the comparison of source and dest ended: runErr (the
// comparison's own error), else an exitStatus 1 when sum counts differences.
func (r *diffLog) end(sum verify.Summary, runErr error, source, dest string) error {
	if r.report != nil {
		if err := r.out.Flush(); err != nil && runErr == nil {
			runErr = fmt.Errorf("--report %s: %w", r.reportName, err)
		}
		if err := r.report.Close(); err != nil && runErr == nil {
			runErr = fmt.Errorf("--report %s: %w", r.reportName, err)
		}
	}
	if runErr != nil {
		return fmt.Errorf("verify: %w", runErr)
	}
	r.log.Info().Int64("entries", sum.Entries).Int64("dirs", sum.Dirs).Int64("content_bytes", sum.ContentBytes).
		Int64("differences", sum.Differences).Msg("verify: done")
	if sum.Equal() {
		return nil
	}
	if more := sum.Differences - int64(r.shown); more > 0 {
		where := "krsync verify --report FILE lists them all"
		if r.report != nil {
			where = "all are in " + r.reportName
		}
		r.log.Warn().Int64("more", more).Msgf("verify: and %d more differences (%s)", more, where)
	}
	return exitStatus{code: 1, err: fmt.Errorf("verify: %s and %s differ: %s", source, dest, countKinds(sum))}
}

// countKinds renders "3 differences (2 mtime, 1 missing)".
func countKinds(sum verify.Summary) string {
	kinds := make([]string, 0, len(sum.ByKind))
	for k := range sum.ByKind {
		kinds = append(kinds, string(k))
	}
	slices.Sort(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d %s", sum.ByKind[verify.Kind(k)], k)
	}
	noun := "differences"
	if sum.Differences == 1 {
		noun = "difference"
	}
	return fmt.Sprintf("%d %s (%s)", sum.Differences, noun, strings.Join(parts, ", "))
}

// check refuses bad input before anything is read: both roots must be directories and not
// the same one. They may nest (verify only reads): the inner tree is then an entry of the
// outer one, to leave out with --exclude.
func (c VerifyCmd) check() error {
	if c.Workers < 1 {
		return usagef("verify: --workers %d: give at least 1", c.Workers)
	}
	if c.Show < 0 {
		return usagef("verify: --show %d: give 0 or more", c.Show)
	}
	var infos [2]fs.FileInfo
	for i, root := range []struct{ flag, path string }{{"--source", c.Source}, {"--dest", c.Dest}} {
		info, err := os.Stat(root.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return usagef("verify: %s %s: no such directory", root.flag, root.path)
		case err != nil:
			return usagef("verify: %s: %v", root.flag, err)
		case !info.IsDir():
			return usagef("verify: %s %s: not a directory", root.flag, root.path)
		}
		infos[i] = info
	}
	if os.SameFile(infos[0], infos[1]) {
		return usagef("verify: --source %s and --dest %s are the same directory: nothing to compare", c.Source, c.Dest)
	}
	return nil
}

// openReport creates the --report file; it may not lie inside either tree, where it would be
// reported as an extraneous or missing entry of its own.
func (c VerifyCmd) openReport() (*os.File, error) {
	if c.Report == "" {
		return nil, nil
	}
	dir, err := filepath.Abs(filepath.Dir(c.Report))
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return nil, usagef("verify: --report %s: %v", c.Report, err)
	}
	for _, root := range []struct{ flag, path string }{{"--source", c.Source}, {"--dest", c.Dest}} {
		resolved, err := filepath.EvalSymlinks(root.path)
		if err == nil {
			resolved, err = filepath.Abs(resolved) // dir is absolute: a relative root never matched
		}
		if err != nil {
			return nil, usagef("verify: %s: %v", root.flag, err)
		}
		if rel, err := filepath.Rel(resolved, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return nil, usagef("verify: --report %s lies inside %s %s, where it would be a difference itself: write it elsewhere", c.Report, root.flag, root.path)
		}
	}
	f, err := os.OpenFile(c.Report, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, usagef("verify: --report: %v", err)
	}
	return f, nil
}
