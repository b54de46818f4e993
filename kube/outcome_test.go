package kube_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// TestSummaryTellsMirrorAndVerify: the one-line outcome (termination message, Events) counts
// --mirror's deletions and says what --verify found, when it ran.
func TestSummaryTellsMirrorAndVerify(t *testing.T) {
	st := leaseapi.Status{Partitions: leaseapi.PartitionCounts{Done: 3, Total: 3}, Finished: true, Mirror: true, Deleted: 5}
	tests := []struct {
		name   string
		verify *leaseapi.VerifyRecord
		err    error
		want   []string
		absent string
	}{
		{"no verify", nil, nil, []string{"krsync done: ", "; 5 deleted"}, "verify"},
		{"verified equal", &leaseapi.VerifyRecord{Entries: 9}, nil, []string{"krsync done: ", "; 5 deleted; verify: equal (9 entries, metadata)"}, ""},
		{"verify found differences", &leaseapi.VerifyRecord{Entries: 9, Differences: 1},
			errors.New("verify: /source and /dest differ: 1 difference (1 extra)"),
			[]string{"krsync failed: verify: /source and /dest differ", "; verify: 1 difference (9 entries"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := kube.Summary(st, tc.verify, tc.err)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Summary = %q, want it to hold %q", got, w)
				}
			}
			if tc.absent != "" && strings.Contains(got, tc.absent) {
				t.Errorf("Summary = %q, want no %q", got, tc.absent)
			}
		})
	}
}
