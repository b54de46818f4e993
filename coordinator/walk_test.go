package coordinator

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
)

// TestFpartWalkFeedsEveryEntry runs the real fpart walk over a small hostile tree and
// checks the file partitions hold every file once and the directory pass every directory.
func TestFpartWalkFeedsEveryEntry(t *testing.T) {
	src := t.TempDir()
	files := []string{"a b", "-dash", "new\nline", "d/x", "d/e/y", "d/e/z\xff", "tab\there"}
	for _, f := range files {
		p := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := LiveDefaults(fpart.Options{Dirs: fpart.DirsUnreadable}, 2, 1)
	if !opts.Live || opts.MaxFiles != 2 {
		t.Fatalf("LiveDefaults = %+v", opts)
	}
	r := start(t, Config{Source: src, Partitioner: opts})
	var gotFiles, gotDirs []string
	for _, l := range drain(t, r.client, "w") {
		if l.Kind == leaseapi.KindFiles {
			if l.Entries > 2 {
				t.Errorf("partition %d has %d entries; want at most 2", l.Partition, l.Entries)
			}
			gotFiles = append(gotFiles, l.Paths()...)
		} else {
			gotDirs = append(gotDirs, l.Paths()...)
		}
	}
	wantFiles := append(slices.Clone(files), "empty")
	slices.Sort(wantFiles)
	slices.Sort(gotFiles)
	if !slices.Equal(gotFiles, wantFiles) {
		t.Fatalf("file partitions hold %q; want %q", gotFiles, wantFiles)
	}
	wantDirs := []string{".", "d", "d/e", "empty"}
	if !slices.Equal(gotDirs, wantDirs) {
		t.Fatalf("directory pass holds %q; want %q", gotDirs, wantDirs)
	}
	st, err := r.wait(t)
	if err != nil || st.EntriesWalked != int64(len(wantFiles)) {
		t.Fatalf("Run = %+v, %v", st, err)
	}
}

func TestLiveDefaultsKeepsAChosenMode(t *testing.T) {
	tests := []struct {
		name string
		in   fpart.Options
		want fpart.Options
	}{
		{"nothing chosen: live -f spread for 3 workers", fpart.Options{}, fpart.Options{MaxFiles: 2000, Live: true, Spread: 3 * SpreadPerWorker}},
		{"-n kept", fpart.Options{Parts: 4}, fpart.Options{Parts: 4}},
		{"-f without -L kept", fpart.Options{MaxFiles: 10}, fpart.Options{MaxFiles: 10}},
		{"-s -L kept", fpart.Options{MaxBytes: 1 << 20, Live: true}, fpart.Options{MaxBytes: 1 << 20, Live: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LiveDefaults(tt.in, 0, 3); !slicesEqualOptions(got, tt.want) {
				t.Fatalf("LiveDefaults(%+v) = %+v; want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func slicesEqualOptions(a, b fpart.Options) bool {
	return a.MaxFiles == b.MaxFiles && a.MaxBytes == b.MaxBytes && a.Parts == b.Parts && a.Live == b.Live && a.Spread == b.Spread
}
