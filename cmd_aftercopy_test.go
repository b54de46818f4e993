package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/leaseapi"
)

// readSummaryJSON decodes a --summary-json file strictly: a field the test does not know is
// a field the README does not document.
func readSummaryJSON(t *testing.T, path string) leaseapi.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("--summary-json: %v", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	var rec leaseapi.Record
	if err := dec.Decode(&rec); err != nil {
		t.Fatalf("--summary-json: %v", err)
	}
	return rec
}

// logSummary is the "summary" log record of a run with --log-format=json.
func logSummary(t *testing.T, stderr string) map[string]float64 {
	t.Helper()
	for line := range strings.Lines(stderr) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["message"] != "summary" {
			continue
		}
		nums := map[string]float64{}
		for k, v := range rec {
			if f, ok := v.(float64); ok {
				nums[k] = f
			}
		}
		return nums
	}
	t.Fatalf("no summary record in:\n%s", stderr)
	return nil
}

func TestLocalSummaryJSONMatchesTheRun(t *testing.T) {
	testbin.Rsync(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	src := smallSource(t)
	dest := filepath.Join(t.TempDir(), "dest")
	summary := filepath.Join(t.TempDir(), "summary.json")
	var fileBytes int64
	for _, rel := range []string{"a", "dir/b", "dir/sub/c", "with space/-d"} {
		fileBytes += int64(len(rel)) // smallSource writes each file's name into it
	}

	code, stderr := runLocal(t, "--source", src, "--dest", dest, "--workers", "2", "--fpart-opts=-f 2 -zz", "--summary-json", summary)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	rec := readSummaryJSON(t, summary)
	logged := logSummary(t, stderr)
	if !rec.Complete || rec.Verify != nil || len(rec.Failed) != 0 || rec.PartitionsFailed != 0 {
		t.Errorf("record %+v: want complete, no failures, no verify", rec)
	}
	// The walk lists the four files (directories are entries only when empty, with -zz).
	checks := []struct {
		name      string
		got, want int64
	}{
		{"entries_walked", rec.EntriesWalked, 4},
		{"entries_copied", rec.EntriesCopied, rec.EntriesWalked},
		{"bytes_copied", rec.BytesCopied, rec.BytesWalked},
		{"files_transferred", rec.FilesTransferred, 4},
		{"bytes_transferred", rec.BytesTransferred, fileBytes},
		{"entries_unchanged", rec.EntriesUnchanged, 0},
		{"entries_not_copied", rec.EntriesNotCopied, 0},
		{"vanished", rec.Vanished, 0},
		{"partitions_done", rec.PartitionsDone, rec.PartitionsTotal},
		{"log entries_walked", rec.EntriesWalked, int64(logged["entries_walked"])},
		{"log bytes_walked", rec.BytesWalked, int64(logged["bytes_walked"])},
		{"log partitions_done", rec.PartitionsDone, int64(logged["partitions_done"])},
		{"log files_transferred", rec.FilesTransferred, int64(logged["files_transferred"])},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if rec.DurationSeconds <= 0 || rec.BytesPerSecond <= 0 || rec.EntriesPerSecond <= 0 || rec.StartedAt.IsZero() {
		t.Errorf("duration %v s, %v B/s, %v entries/s, started %v: want all set", rec.DurationSeconds, rec.BytesPerSecond, rec.EntriesPerSecond, rec.StartedAt)
	}

	// Again over the finished copy: every file is found unchanged, nothing is transferred.
	code, stderr = runLocal(t, "--source", src, "--dest", dest, "--workers", "2", "--fpart-opts=-f 2 -zz", "--summary-json", summary)
	if code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, stderr)
	}
	again := readSummaryJSON(t, summary)
	if again.FilesTransferred != 0 || again.EntriesUnchanged != 4 || again.EntriesCopied != rec.EntriesWalked {
		t.Errorf("rerun: %d files transferred, %d unchanged, %d copied: want 0, the 4 files, %d",
			again.FilesTransferred, again.EntriesUnchanged, again.EntriesCopied, rec.EntriesWalked)
	}

	// With --mirror, what only the destination holds is deleted and counted.
	for _, rel := range []string{"extra", "dir/extra"} {
		if err := os.WriteFile(filepath.Join(dest, rel), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stderr = runLocal(t, "--source", src, "--dest", dest, "--workers", "2", "--fpart-opts=-f 2 -zz", "--mirror", "--summary-json", summary)
	if code != 0 {
		t.Fatalf("--mirror: exit %d:\n%s", code, stderr)
	}
	if mirrored := readSummaryJSON(t, summary); mirrored.EntriesDeleted != 2 || !mirrored.Mirror || mirrored.DryRun {
		t.Errorf("--mirror: %d deleted, mirror %v, dry run %v: want 2, true, false", mirrored.EntriesDeleted, mirrored.Mirror, mirrored.DryRun)
	}
}

func TestLocalSummaryNamesFailedPaths(t *testing.T) {
	rsync := testbin.Rsync(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	src := smallSource(t)
	summary := filepath.Join(t.TempDir(), "summary.json")
	// rsync copies, then complains about one file as it does when it cannot read it (exit 23).
	wrapper := filepath.Join(t.TempDir(), "rsync-complains")
	script := fmt.Sprintf(`#!/bin/sh
'%s' "$@" || exit $?
case "$*" in *dir/b*) echo 'rsync: [sender] send_files failed to open "%s/dir/b": Permission denied (13)' >&2; exit 23;; esac
`, rsync, src)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	code, stderr := runLocal(t, "--source", src, "--dest", t.TempDir(), "--workers", "1", "--fpart-opts=-f 1 -zz",
		"--max-attempts", "1", "--rsync", wrapper, "--summary-json", summary)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, stderr)
	}
	rec := readSummaryJSON(t, summary)
	if rec.Complete || rec.PartitionsFailed != 1 || len(rec.Failed) != 1 || rec.EntriesNotCopied != 1 {
		t.Fatalf("record %+v: want one failed partition of one entry", rec)
	}
	if paths := rec.Failed[0].FailedPaths; len(paths) != 1 || paths[0] != "dir/b" {
		t.Errorf("failed paths %q, want [dir/b]", paths)
	}
}

func TestLocalVerifyAfterCopy(t *testing.T) {
	rsync := testbin.Rsync(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	src := filepath.Join(t.TempDir(), "src")
	const seed = 20260110
	if _, err := treegen.Random(src, treegen.RandomSpec{Seed: seed, Entries: 400}); err != nil {
		t.Fatal(err)
	}
	// An excluded name: in the source it is not copied, in the destination it is not removed;
	// --verify leaves it out on both sides, as the copy did.
	if err := os.WriteFile(filepath.Join(src, "skipme.tmp"), []byte("source"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("equal", func(t *testing.T) {
		dest := t.TempDir()
		if err := os.WriteFile(filepath.Join(dest, "skipme.tmp"), []byte("dest only"), 0o600); err != nil {
			t.Fatal(err)
		}
		summary := filepath.Join(t.TempDir(), "summary.json")
		code, stderr := runLocal(t, "--source", src, "--dest", dest, "--workers", "3", "--fpart-opts=-zz -x *.tmp",
			"--files-per-partition", "40", "--verify", "--summary-json", summary)
		if code != 0 {
			t.Fatalf("seed %d: exit %d:\n%s", seed, code, stderr)
		}
		if !strings.Contains(stderr, `"message":"verify: done"`) {
			t.Errorf("no verify in the log:\n%s", stderr)
		}
		rec := readSummaryJSON(t, summary)
		if !rec.Complete || rec.Verify == nil || rec.Verify.Differences != 0 || rec.Verify.Entries < 400 || rec.Verify.Checksum {
			t.Errorf("record %+v, verify %+v: want complete, equal, at least 400 entries compared, metadata only", rec, rec.Verify)
		}
	})

	t.Run("difference planted during the copy", func(t *testing.T) {
		dest := t.TempDir()
		// After each rsync run, the first one that finds the destination's "#top" grows it by
		// a byte (which changes its mtime too): rsync has already reported the file copied.
		wrapper := filepath.Join(t.TempDir(), "rsync-tamper")
		script := fmt.Sprintf(`#!/bin/sh
'%[1]s' "$@"
rc=$?
if [ -f '%[2]s/#top' ] && mkdir '%[3]s' 2>/dev/null; then printf x >> '%[2]s/#top'; fi
exit $rc
`, rsync, dest, filepath.Join(t.TempDir(), "tampered"))
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		summary := filepath.Join(t.TempDir(), "summary.json")
		code, stderr := runLocal(t, "--source", src, "--dest", dest, "--workers", "3", "--fpart-opts=-zz -x *.tmp",
			"--files-per-partition", "40", "--rsync", wrapper, "--verify-checksum", "--summary-json", summary)
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, stderr)
		}
		if !strings.Contains(stderr, `"kind":"size","path":"#top"`) {
			t.Errorf("the log does not name the planted difference:\n%s", stderr)
		}
		if last := lastNonEmptyLine(stderr); !strings.Contains(last, "differ: 2 differences (1 mtime, 1 size)") {
			t.Errorf("last line %q does not count the difference", last)
		}
		rec := readSummaryJSON(t, summary)
		if rec.Complete || rec.Verify == nil || rec.Verify.Differences != 2 || rec.Verify.ByKind["size"] != 1 || !rec.Verify.Checksum {
			t.Errorf("record %+v, verify %+v: want incomplete, a size and an mtime difference, with contents", rec, rec.Verify)
		}
		if rec.PartitionsFailed != 0 || rec.EntriesCopied != rec.EntriesWalked {
			t.Errorf("record %+v: the copy itself succeeded", rec)
		}
	})

	t.Run("filters verify cannot apply", func(t *testing.T) {
		code, stderr := runLocal(t, "--source", src, "--dest", t.TempDir(), "--fpart-opts=-zz -X *.TMP", "--verify")
		if code != 2 || !strings.Contains(stderr, "-X, -y or -Y") {
			t.Errorf("exit %d, want 2 naming the filters:\n%s", code, stderr)
		}
	})
}
