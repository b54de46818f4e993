package main

import (
	"github.com/krsync/krsync/internal/testing/testbin"

	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runLocal runs `krsync --log-format=json --log-level=debug local args...` in-process.
func runLocal(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	var stdout, errBuf testbin.Buffer // the workers and the coordinator log concurrently
	code = run(t.Context(), append([]string{"--log-format=json", "--log-level=debug", "local"}, args...), Streams{Stdout: &stdout, Stderr: &errBuf})
	if stdout.Len() > 0 {
		t.Errorf("stdout is not empty: %q", stdout.String())
	}
	return code, errBuf.String()
}

func smallSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	for _, rel := range []string{"a", "dir/b", "dir/sub/c", "with space/-d"} {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

func TestLocalCommandCopiesAndForgetsItsState(t *testing.T) {
	testbin.Rsync(t)
	stateHome := t.TempDir()
	t.Setenv("XDG_STATE_HOME", stateHome)
	src := smallSource(t)
	dest := filepath.Join(t.TempDir(), "dest") // created by krsync: its parent exists

	code, stderr := runLocal(t, "--source", src, "--dest", dest, "--workers", "3", "--fpart-opts=-f 1 -zz")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	var summary struct {
		Message          string `json:"message"`
		FilesTransferred *int64 `json:"files_transferred"`
		PartitionsDone   *int64 `json:"partitions_done"`
		PartitionsFailed *int64 `json:"partitions_failed"`
	}
	for line := range strings.Lines(stderr) {
		if json.Unmarshal([]byte(line), &summary) == nil && summary.Message == "summary" {
			break
		}
	}
	if summary.Message != "summary" || summary.FilesTransferred == nil || *summary.FilesTransferred != 4 ||
		summary.PartitionsDone == nil || *summary.PartitionsDone < 4 || summary.PartitionsFailed == nil || *summary.PartitionsFailed != 0 {
		t.Errorf("summary %+v, want 4 files transferred and no failure; log:\n%s", summary, stderr)
	}
	for _, rel := range []string{"a", "dir/b", "dir/sub/c", "with space/-d"} {
		if got, err := os.ReadFile(filepath.Join(dest, rel)); err != nil || string(got) != rel {
			t.Errorf("%s: %q, %v", rel, got, err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(stateHome, "krsync", "*"))
	if len(left) != 0 {
		t.Errorf("a successful run left state behind: %q", left)
	}
}

func TestLocalCommandStopsAllWorkersOnFatalRsyncError(t *testing.T) {
	testbin.Rsync(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	src := smallSource(t)
	// rsync itself refuses this option (exit 1): every partition would fail the same way.
	code, stderr := runLocal(t, "--source", src, "--dest", t.TempDir(), "--workers", "2",
		"--fpart-opts=-f 1 -zz", "--rsync-opts=--archive --no-such-option")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, stderr)
	}
	last := lastNonEmptyLine(stderr)
	if !strings.HasPrefix(last, "krsync: ") || !strings.Contains(last, "rsync exit 1") {
		t.Errorf("last line %q does not name rsync's refusal", last)
	}
	if n := strings.Count(stderr, `"message":"running rsync"`); n > 2 {
		t.Errorf("rsync ran %d times; the workers should stop at the first fatal error", n)
	}
}

func lastNonEmptyLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
