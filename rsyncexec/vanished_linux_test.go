package rsyncexec

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestConfirmVanished: of the paths rsync says are gone, those the source still holds (a
// file, a dangling symlink, a directory) are failures, not vanished entries; those really
// gone (or below a file) stay vanished.
func TestConfirmVanished(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src, []entry{
		{path: "here", content: "h", mode: 0o644, uid: -1, gid: -1},
		{path: "dir/#also here", content: "x", mode: 0o644, uid: -1, gid: -1},
		{path: "dangling", mode: os.ModeSymlink, content: "/nonexistent", uid: -1, gid: -1},
	})
	tests := []struct {
		name                 string
		said                 []string
		wantGone, wantFailed []string
	}{
		{"all gone", []string{"gone", "dir/gone"}, []string{"gone", "dir/gone"}, nil},
		{"first and last still there", []string{"here", "gone", "dir/#also here"}, []string{"gone"}, []string{"here", "dir/#also here"}},
		{"a dangling symlink is there", []string{"dangling"}, nil, []string{"dangling"}},
		{"below a file", []string{"here/x"}, []string{"here/x"}, nil},
		{"a directory", []string{"dir"}, nil, []string{"dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newStderrReader(src, t.TempDir())
			for _, p := range tt.said {
				r.line(`rsync: [sender] link_stat "` + filepath.Join(src, ".", p) + `" failed: No such file or directory (2)`)
			}
			if r.vanishedCount != len(tt.said) {
				t.Fatalf("read %d vanished of %d lines: %q", r.vanishedCount, len(tt.said), r.vanished)
			}
			r.confirmVanished(src)
			if !reflect.DeepEqual(r.vanished, tt.wantGone) && (len(r.vanished) != 0 || len(tt.wantGone) != 0) {
				t.Errorf("vanished %q, want %q", r.vanished, tt.wantGone)
			}
			if r.vanishedCount != len(tt.wantGone) {
				t.Errorf("vanishedCount %d, want %d", r.vanishedCount, len(tt.wantGone))
			}
			if !reflect.DeepEqual(r.failed, tt.wantFailed) && (len(r.failed) != 0 || len(tt.wantFailed) != 0) {
				t.Errorf("failed %q, want %q", r.failed, tt.wantFailed)
			}
			if r.otherErrors != len(tt.wantFailed) {
				t.Errorf("otherErrors %d, want %d (a failure makes exit 23 a failure)", r.otherErrors, len(tt.wantFailed))
			}
		})
	}
}
