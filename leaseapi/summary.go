package leaseapi

import (
	"fmt"
	"strings"
	"time"
)

// This file is the one rendering of a Status for people: the one-line Summary of a run's
// outcome (krsync coordinator's last line, the termination message, the Events) and the
// Report of its progress (krsync status, and krsync local's closing lines on a terminal).
// JSON readers get the Status itself.

// Summary is the run's numbers in one line, e.g. "3 partitions done, 0 failed; 10 of 10
// entries (4096 of 4096 bytes) copied; 10 files (4096 bytes) transferred; 0 walk errors; 0
// vanished".
func (s Status) Summary() string {
	p := s.Partitions
	return fmt.Sprintf("%d partitions done, %d failed; %d of %d entries (%d of %d bytes) copied; %d files (%d bytes) transferred; %d walk errors; %d vanished",
		p.Done, p.Failed, s.EntriesDone, s.EntriesWalked, s.BytesDone, s.BytesWalked, s.FilesTransferred, s.BytesTransferred, s.WalkErrors, s.Vanished) + s.mirrorSummary()
}

// mirrorSummary is Summary's tail for a --mirror run: "; 3 deleted" (a dry run: "; dry run:
// nothing copied, 3 would be deleted").
func (s Status) mirrorSummary() string {
	switch {
	case s.DryRun:
		return fmt.Sprintf("; dry run: nothing copied, %d would be deleted", s.Deleted)
	case s.Mirror || s.Deleted > 0:
		return fmt.Sprintf("; %d deleted", s.Deleted)
	}
	return ""
}

// Report renders the numbers of the local progress bar (files and bytes done of walked,
// partitions done of total, walking or not) with rate and ETA as of now, as a few lines,
// and every failed partition.
func (s Status) Report(now time.Time) string {
	var b strings.Builder
	state := "copying, walk still running"
	switch {
	case s.Finished && s.Partitions.Failed > 0:
		state = "finished with failed partitions"
	case s.Finished:
		state = "finished"
	case s.Verify != nil && s.Verify.State == VerifyRunning:
		state = "verifying (--verify), copy done"
	case s.WalkDone:
		state = "copying, walk done"
	}
	p := s.Partitions
	fmt.Fprintf(&b, "state:        %s\n", state)
	fmt.Fprintf(&b, "files:        %d / %d%s\n", s.EntriesDone, s.EntriesWalked, percent(s.EntriesDone, s.EntriesWalked))
	fmt.Fprintf(&b, "bytes:        %s / %s%s\n", HumanBytes(s.BytesDone), HumanBytes(s.BytesWalked), percent(s.BytesDone, s.BytesWalked))
	fmt.Fprintf(&b, "partitions:   %d / %d done, %d leased, %d pending, %d failed\n", p.Done, p.Total, p.Leased, p.Pending, p.Failed)
	fmt.Fprintf(&b, "transferred:  %d files, %s\n", s.FilesTransferred, HumanBytes(s.BytesTransferred))
	fmt.Fprintf(&b, "walk errors:  %d\n", s.WalkErrors)
	if s.Vanished > 0 {
		fmt.Fprintf(&b, "vanished:     %d (deleted from the source while krsync ran: not copied, not an error)\n", s.Vanished)
	}
	switch {
	case s.DryRun:
		fmt.Fprintf(&b, "deleted:      none (dry run: %d would be deleted, nothing copied)\n", s.Deleted)
	case s.Mirror || s.Deleted > 0:
		fmt.Fprintf(&b, "deleted:      %d (--mirror: in the destination, not in the source)\n", s.Deleted)
	}
	if s.Verify != nil {
		fmt.Fprintf(&b, "verify:       %s\n", s.Verify.progressLine())
	}
	if !s.StartedAt.IsZero() {
		elapsed := now.Sub(s.StartedAt).Round(time.Second)
		line := fmt.Sprintf("elapsed:      %s", elapsed)
		if secs := elapsed.Seconds(); secs > 0 && s.BytesDone > 0 {
			rate := float64(s.BytesDone) / secs
			line += fmt.Sprintf(", %s/s", HumanBytes(int64(rate)))
			if s.WalkDone && !s.Finished && s.BytesWalked > s.BytesDone {
				eta := time.Duration(float64(s.BytesWalked-s.BytesDone) / rate * float64(time.Second))
				line += fmt.Sprintf(", ETA %s", eta.Round(time.Second))
			}
		}
		b.WriteString(line + "\n")
	}
	writeFailed(&b, s.Failed)
	return b.String()
}

// OneLine folds white space, line breaks included, so that a message (an rsync error, a
// panic) stays one line in a report, a log field or a termination message.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// HumanBytes renders n in IEC units: "512 B", "1.5 MiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func percent(done, total int64) string {
	if total <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%.1f%%)", 100*float64(done)/float64(total))
}

// Record is a finished run's numbers: the JSON object of --summary-json, and, through
// Table, the closing table on a terminal. krsync local and krsync coordinator both make it
// with Status.Record, so the file, the table, `krsync status` and /metrics show the same
// numbers.
type Record struct {
	// Complete is true when the run copied everything it walked (no failed partition, no
	// walk error, not interrupted); the command's exit code says the same.
	Complete        bool      `json:"complete"`
	StartedAt       time.Time `json:"started_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	EntriesWalked   int64     `json:"entries_walked"`
	BytesWalked     int64     `json:"bytes_walked"`
	// EntriesCopied and BytesCopied are the entries of done partitions: copied by rsync, or
	// already equal in the destination (EntriesUnchanged of them were not even given to rsync).
	EntriesCopied    int64 `json:"entries_copied"`
	BytesCopied      int64 `json:"bytes_copied"`
	EntriesUnchanged int64 `json:"entries_unchanged"`
	// FilesTransferred and BytesTransferred are rsync's --stats: the files whose data was sent.
	FilesTransferred int64 `json:"files_transferred"`
	BytesTransferred int64 `json:"bytes_transferred"`
	// EntriesNotCopied are walked entries of partitions that did not finish (failed ones).
	EntriesNotCopied int64 `json:"entries_not_copied"`
	// EntriesDeleted are the destination entries --mirror deleted (DryRun: would delete).
	EntriesDeleted   int64             `json:"entries_deleted"`
	Mirror           bool              `json:"mirror,omitempty"`
	DryRun           bool              `json:"dry_run,omitempty"`
	Vanished         int64             `json:"vanished"`
	WalkErrors       int64             `json:"walk_errors"`
	PartitionsTotal  int64             `json:"partitions_total"`
	PartitionsDone   int64             `json:"partitions_done"`
	PartitionsFailed int64             `json:"partitions_failed"`
	Failed           []FailedPartition `json:"failed,omitempty"`
	// BytesPerSecond and EntriesPerSecond are BytesCopied and EntriesCopied over the duration.
	BytesPerSecond   float64 `json:"bytes_per_second"`
	EntriesPerSecond float64 `json:"entries_per_second"`
	// Verify is the comparison run after the copy (--verify), when one ran.
	Verify *VerifyRecord `json:"verify,omitempty"`
}

// VerifyRecord is the outcome of `--verify` after a copy.
type VerifyRecord struct {
	Checksum    bool             `json:"checksum"`
	Entries     int64            `json:"entries"`
	Differences int64            `json:"differences"`
	ByKind      map[string]int64 `json:"by_kind,omitempty"`
}

// Summary is the comparison's outcome in a few words: "equal (1234 entries, metadata)" or
// "3 differences (1234 entries, metadata and contents)".
func (v VerifyRecord) Summary() string {
	what := "metadata"
	if v.Checksum {
		what = "metadata and contents"
	}
	verdict := "equal"
	switch {
	case v.Differences == 1:
		verdict = "1 difference"
	case v.Differences > 1:
		verdict = fmt.Sprintf("%d differences", v.Differences)
	}
	return fmt.Sprintf("%s (%d entries, %s)", verdict, v.Entries, what)
}

// progressLine says how far the comparison got: "12 / 40 directories (30.0%), 2 differences".
func (v VerifyProgress) progressLine() string {
	what := "metadata"
	if v.Checksum {
		what = "metadata and contents"
	}
	switch v.State {
	case VerifyWaiting:
		return fmt.Sprintf("waiting for the copy (%s)", what)
	case VerifySkipped:
		return "skipped: the copy is incomplete"
	}
	line := fmt.Sprintf("%d / %d directories%s, %d entries, %d differences (%s)",
		v.DirsDone, v.Dirs, percent(v.DirsDone, v.Dirs), v.Entries, v.Differences, what)
	if v.State == VerifyDone {
		line = "done: " + line
	}
	return line
}

// Record makes the run's record from its final status and how long it took.
func (s Status) Record(took time.Duration) Record {
	p := s.Partitions
	r := Record{
		Complete:  s.Finished && p.Failed == 0 && s.WalkErrors == 0,
		StartedAt: s.StartedAt, DurationSeconds: took.Seconds(),
		EntriesWalked: s.EntriesWalked, BytesWalked: s.BytesWalked,
		EntriesCopied: s.EntriesDone, BytesCopied: s.BytesDone, EntriesUnchanged: s.Unchanged,
		FilesTransferred: s.FilesTransferred, BytesTransferred: s.BytesTransferred,
		EntriesNotCopied: max(s.EntriesWalked-s.EntriesDone-s.VanishedListed, 0),
		EntriesDeleted:   s.Deleted, Mirror: s.Mirror, DryRun: s.DryRun,
		Vanished: s.Vanished, WalkErrors: s.WalkErrors,
		PartitionsTotal: p.Total, PartitionsDone: p.Done, PartitionsFailed: p.Failed,
		Failed: s.Failed,
	}
	if secs := took.Seconds(); secs > 0 {
		r.BytesPerSecond = float64(s.BytesDone) / secs
		r.EntriesPerSecond = float64(s.EntriesDone) / secs
	}
	return r
}

// Table renders the record for people: a table of entries and bytes, then the failed
// partitions with their paths.
func (r Record) Table() string {
	var b strings.Builder
	row := func(what string, entries int64, bytes string, note string) {
		fmt.Fprintf(&b, "%-16s %12d %12s  %s\n", what, entries, bytes, note)
	}
	fmt.Fprintf(&b, "%-16s %12s %12s\n", "", "entries", "bytes")
	row("walked", r.EntriesWalked, HumanBytes(r.BytesWalked), "")
	row("copied", r.EntriesCopied, HumanBytes(r.BytesCopied), "in the destination, equal to the source")
	row("  transferred", r.FilesTransferred, HumanBytes(r.BytesTransferred), "files whose data rsync sent")
	row("  unchanged", r.EntriesUnchanged, "", "already equal, skipped")
	row("not copied", r.EntriesNotCopied, HumanBytes(max(r.BytesWalked-r.BytesCopied, 0)), "in failed partitions")
	switch {
	case r.DryRun:
		row("deleted", 0, "", fmt.Sprintf("dry run: %d would be deleted, nothing copied", r.EntriesDeleted))
	case r.Mirror || r.EntriesDeleted > 0:
		row("deleted", r.EntriesDeleted, "", "--mirror: in the destination, not in the source")
	}
	row("vanished", r.Vanished, "", "deleted from the source during the run")
	row("walk errors", r.WalkErrors, "", "unreadable: nothing below them copied")
	fmt.Fprintf(&b, "%-16s %d done, %d failed, of %d\n", "partitions", r.PartitionsDone, r.PartitionsFailed, r.PartitionsTotal)
	dur := time.Duration(r.DurationSeconds * float64(time.Second)).Round(time.Millisecond)
	fmt.Fprintf(&b, "%-16s %s (%s/s, %.0f entries/s)\n", "duration", dur, HumanBytes(int64(r.BytesPerSecond)), r.EntriesPerSecond)
	if v := r.Verify; v != nil {
		fmt.Fprintf(&b, "%-16s %s\n", "verify", v.Summary())
	}
	writeFailed(&b, r.Failed)
	return b.String()
}

// writeFailed lists failed partitions and their failed paths, one per line.
func writeFailed(b *strings.Builder, failed []FailedPartition) {
	for _, f := range failed {
		fmt.Fprintf(b, "failed:       partition %d after %d attempts: %s\n", f.Partition, f.Attempts, OneLine(f.Error))
		for _, path := range f.FailedPaths {
			fmt.Fprintf(b, "                %q\n", path)
		}
	}
}
