package leaseapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/krsync/krsync/leaseapi"
)

func TestStatusReport(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		st   leaseapi.Status
		want []string
	}{
		{"walking", leaseapi.Status{
			Partitions:    leaseapi.PartitionCounts{Pending: 3, Leased: 2, Done: 5, Total: 10},
			EntriesWalked: 1000, EntriesDone: 500, BytesWalked: 4 << 20, BytesDone: 1 << 20, StartedAt: start,
		}, []string{"walk still running", "files:        500 / 1000 (50.0%)", "1.0 MiB / 4.0 MiB (25.0%)",
			"partitions:   5 / 10 done, 2 leased, 3 pending, 0 failed", "elapsed:      1m0s"}},
		{"walk done, ETA", leaseapi.Status{
			Partitions: leaseapi.PartitionCounts{Done: 1, Total: 2}, WalkDone: true,
			BytesWalked: 120 << 20, BytesDone: 60 << 20, StartedAt: start,
		}, []string{"copying, walk done", "1.0 MiB/s", "ETA 1m0s"}},
		{"finished with failures", leaseapi.Status{
			Partitions: leaseapi.PartitionCounts{Done: 1, Failed: 1, Total: 2}, WalkDone: true, Finished: true,
			Failed: []leaseapi.FailedPartition{{Partition: 7, Attempts: 3, Error: "rsync exit 23\nline two"}},
		}, []string{"finished with failed partitions", "partition 7 after 3 attempts: rsync exit 23 line two"}},
		{"mirror", leaseapi.Status{Partitions: leaseapi.PartitionCounts{Done: 1, Total: 2}, WalkDone: true, Mirror: true, Deleted: 3},
			[]string{"deleted:      3 (--mirror"}},
		{"mirror dry run", leaseapi.Status{Partitions: leaseapi.PartitionCounts{Done: 1, Total: 2}, Mirror: true, DryRun: true, Deleted: 4},
			[]string{"deleted:      none (dry run: 4 would be deleted"}},
		{"verify waiting", leaseapi.Status{WalkDone: true, Verify: &leaseapi.VerifyProgress{State: leaseapi.VerifyWaiting}},
			[]string{"copying, walk done", "verify:       waiting for the copy (metadata)"}},
		{"verifying", leaseapi.Status{WalkDone: true, Verify: &leaseapi.VerifyProgress{State: leaseapi.VerifyRunning, Checksum: true,
			Dirs: 40, DirsDone: 10, Entries: 300, Differences: 2}},
			[]string{"state:        verifying", "verify:       10 / 40 directories (25.0%), 300 entries, 2 differences (metadata and contents)"}},
		{"verified", leaseapi.Status{WalkDone: true, Finished: true, Verify: &leaseapi.VerifyProgress{State: leaseapi.VerifyDone, Dirs: 4, DirsDone: 4}},
			[]string{"verify:       done: 4 / 4 directories (100.0%), 0 entries, 0 differences"}},
		{"verify skipped", leaseapi.Status{WalkDone: true, Finished: true, Verify: &leaseapi.VerifyProgress{State: leaseapi.VerifySkipped}},
			[]string{"verify:       skipped: the copy is incomplete"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.st.Report(start.Add(time.Minute))
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
		})
	}
}

func TestVerifyRecordSummary(t *testing.T) {
	tests := []struct {
		name string
		v    leaseapi.VerifyRecord
		want string
	}{
		{"equal", leaseapi.VerifyRecord{Entries: 10}, "equal (10 entries, metadata)"},
		{"differences, contents", leaseapi.VerifyRecord{Checksum: true, Entries: 10, Differences: 2}, "2 differences (10 entries, metadata and contents)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.Summary(); got != tc.want {
				t.Errorf("Summary() = %q, want %q", got, tc.want)
			}
		})
	}
}
