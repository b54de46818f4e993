package e2e

import (
	"github.com/krsync/krsync/internal/testing/testbin"

	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// buildKrsync is the krsync binary, built once per test binary (TestMain removes it).
func buildKrsync(t *testing.T) string { return testbin.Krsync(t) }

// hostileSpec is the hostile tree of the e2e tests; bigSize 0 leaves the big file out.
func hostileSpec(seed uint64, files int, bigSize int64) treegen.Spec {
	spec := treegen.Spec{Seed: seed, Files: files, Hostile: true, SparseSize: 2 << 20}
	if bigSize > 0 {
		spec.BigFiles, spec.BigSize = 1, bigSize
	}
	return spec
}

// newHostileTree generates a hostile tree at dir (which must not exist or be empty) and
// logs the seed so a failure can be reproduced.
func newHostileTree(t *testing.T, dir string, spec treegen.Spec) treegen.Summary {
	t.Helper()
	sum, err := treegen.Generate(dir, spec)
	if err != nil {
		t.Fatalf("generate tree (seed %d): %v", spec.Seed, err)
	}
	t.Logf("tree %s: seed %d, %d files, %d dirs, %d symlinks, %d extra hard links, %d specials, %d bytes %v",
		dir, spec.Seed, sum.Files, sum.Dirs, sum.Symlinks, sum.Hardlink, sum.Specials, sum.Bytes, sum.Notes)
	return sum
}

// compareTrees fails the test when the destination b differs from the source a in
// anything rsync -aH keeps (directory mtimes and symlink mtimes included).
func compareTrees(t *testing.T, a, b string) {
	t.Helper()
	diffs, err := treecmp.Compare(a, b, treecmp.Options{SymlinkTimes: true})
	if err != nil {
		t.Fatalf("compare %s with %s: %v", a, b, err)
	}
	if len(diffs) > 0 {
		t.Errorf("%d differences between source %s and destination %s:\n%s", len(diffs), a, b, treecmp.Format(diffs, 40))
	}
}

// snapshotTree records a tree's metadata and content hashes, to prove later it is unchanged.
func snapshotTree(t *testing.T, dir string) *treecmp.Tree {
	t.Helper()
	tree, err := treecmp.Scan(dir, treecmp.Options{SymlinkTimes: true})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return tree
}

// requireUnchanged fails when dir differs from its earlier snapshot (atimes aside).
func requireUnchanged(t *testing.T, before *treecmp.Tree, what string) {
	t.Helper()
	after := snapshotTree(t, before.Root)
	if diffs := treecmp.Diff(before, after, treecmp.Options{SymlinkTimes: true}); len(diffs) > 0 {
		t.Errorf("%s (%s) changed:\n%s", what, before.Root, treecmp.Format(diffs, 40))
	}
}

// rsyncSeesNoChanges runs the reference check `rsync -aHn --delete --itemize-changes a/ b/`
// and fails if rsync would change anything.
func rsyncSeesNoChanges(t *testing.T, a, b string) {
	t.Helper()
	rsync := testbin.Rsync(t)
	cmd := exec.Command(rsync, "-aHn", "--delete", "--itemize-changes", a+"/", b+"/")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("rsync -n: %v\n%s", err, stderr.String())
	}
	if out := stdout.String(); out != "" {
		t.Errorf("rsync -aHn --delete --itemize-changes sees changes:\n%s", truncateLines(out, 40))
	}
}

func truncateLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "") + fmt.Sprintf("... and %d more lines\n", len(lines)-n)
}

// krsyncRun is how one krsync process ended.
type krsyncRun struct {
	code           int
	stdout, stderr string
}

// runOptions tune runKrsync.
type runOptions struct {
	env  []string             // added to the environment (KEY=VALUE)
	dir  string               // working directory
	attr *syscall.SysProcAttr // e.g. credentials of an unprivileged user
}

// runKrsync runs the krsync binary with args to completion; the deadline only guards a hang.
func runKrsync(t *testing.T, opts runOptions, args ...string) krsyncRun {
	t.Helper()
	bin := buildKrsync(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), opts.env...)
	cmd.Dir = opts.dir
	cmd.SysProcAttr = opts.attr
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	run := krsyncRun{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("krsync %q did not finish in time:\n%s", args, run.stderr)
	case errors.As(err, &exit):
		run.code = exit.ExitCode()
	default:
		t.Fatalf("krsync %q: %v", args, err)
	}
	return run
}

// logLines decodes krsync's JSON log lines (--log-format=json) from stderr; other lines are
// returned as they are.
func logLines(stderr string) (records []map[string]any, other []string) {
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			records = append(records, rec)
		} else if strings.TrimSpace(line) != "" {
			other = append(other, line)
		}
	}
	return records, other
}

// summaryOf returns the fields of krsync's "summary" log record.
func summaryOf(t *testing.T, run krsyncRun) map[string]any {
	t.Helper()
	records, _ := logLines(run.stderr)
	for _, rec := range records {
		if rec["message"] == "summary" {
			return rec
		}
	}
	t.Fatalf("no summary record in krsync's log:\n%s", truncateLines(run.stderr, 40))
	return nil
}

// summaryInt reads a number from the summary record.
func summaryInt(t *testing.T, summary map[string]any, key string) int64 {
	t.Helper()
	v, ok := summary[key].(float64)
	if !ok {
		t.Fatalf("summary has no number %q: %v", key, summary)
	}
	return int64(v)
}

// publicDir returns a fresh temporary directory that every user may traverse, so tests can
// run krsync as an unprivileged user on it.
func publicDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// unprivileged returns process attributes that run a child as nobody when the tests run as
// root (root ignores permission bits), and nil otherwise.
func unprivileged() *syscall.SysProcAttr {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
}

// dirNames lists the names in dir, sorted (os.ReadDir sorts).
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// finalLine is the last non-empty line of a program's output: krsync's one-line error.
func finalLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
