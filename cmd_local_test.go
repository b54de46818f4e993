package main

import (
	"github.com/krsync/krsync/internal/testbin"

	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// localRsync finds the real rsync; without it the test skips, or fails under CI=true.
func localRsync(t *testing.T) string {
	t.Helper()
	return testbin.Program(t, "rsync")
}

// runLocal runs `krsync --log-format=json --log-level=debug local args...` in-process.
func runLocal(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	var stdout, errBuf lockedWriter // the workers and the coordinator log concurrently
	code = run(t.Context(), append([]string{"--log-format=json", "--log-level=debug", "local"}, args...), Streams{Stdout: &stdout, Stderr: &errBuf})
	if stdout.Len() > 0 {
		t.Errorf("stdout is not empty: %q", stdout.String())
	}
	return code, errBuf.String()
}

// lockedWriter is a bytes.Buffer safe for concurrent writes, as os.Stderr is.
type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lockedWriter) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Len()
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
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
	localRsync(t)
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
	localRsync(t)
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

func TestRefuseOverlap(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "src")
	other := filepath.Join(root, "other")
	for _, d := range []string{filepath.Join(src, "sub"), other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, source, dest string
		wantErr            string
	}{
		{"apart", src, other, ""},
		{"sibling with a common prefix", src, src + "-copy", ""},
		{"same", src, src, "inside the source"},
		{"dest inside source", src, filepath.Join(src, "sub", "copy"), "inside the source"},
		{"source inside dest", filepath.Join(src, "sub"), src, "source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := refuseOverlap(tt.source, tt.dest)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("refuseOverlap(%s, %s) = %v, want %q", tt.source, tt.dest, err, tt.wantErr)
			}
		})
	}
}

func TestChooseStateDir(t *testing.T) {
	root := t.TempDir()
	src, dest := filepath.Join(root, "src"), filepath.Join(root, "dest")
	for _, d := range []string{src, dest} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, flag, xdg string
		wantUnder       string
		wantErr         string
	}{
		{"default under XDG_STATE_HOME", "", filepath.Join(root, "state"), filepath.Join(root, "state", "krsync"), ""},
		{"XDG_STATE_HOME inside the source falls back", "", filepath.Join(src, ".state"), os.TempDir(), ""},
		{"explicit", filepath.Join(root, "mine"), "", filepath.Join(root, "mine"), ""},
		{"explicit inside the source", filepath.Join(src, "state"), "", "", "inside the source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_STATE_HOME", tt.xdg)
			dir, err := chooseStateDir(tt.flag, src, dest)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("chooseStateDir = %s, %v; want an error with %q", dir, err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.HasPrefix(dir, tt.wantUnder) {
				t.Fatalf("chooseStateDir = %s, %v; want a directory under %s", dir, err, tt.wantUnder)
			}
		})
	}
	// The default is stable for one pair, and differs between pairs.
	t.Setenv("XDG_STATE_HOME", filepath.Join(root, "state"))
	a1, _ := chooseStateDir("", src, dest)
	a2, _ := chooseStateDir("", src, dest)
	b, _ := chooseStateDir("", src, dest+"2")
	if a1 != a2 || a1 == b {
		t.Errorf("default state dirs %s, %s, %s: want one per source and destination pair", a1, a2, b)
	}
}
