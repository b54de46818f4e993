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
	for _, f := range s.Failed {
		fmt.Fprintf(&b, "failed:       partition %d after %d attempts: %s\n", f.Partition, f.Attempts, OneLine(f.Error))
		for _, path := range f.FailedPaths {
			fmt.Fprintf(&b, "                %q\n", path)
		}
	}
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
