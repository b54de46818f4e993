package pathcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChecks(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		check   func(string) error
		path    string
		wantErr string
	}{
		{"source ok", Source, dir, ""},
		{"source missing", Source, filepath.Join(dir, "missing"), "does not exist"},
		{"source is a file", Source, file, "is not a directory"},
		{"dest ok", Dest, dir, ""},
		{"dest missing", Dest, filepath.Join(dir, "missing"), "does not exist"},
		{"dest is a file", Dest, file, "is not a directory"},
		{"dest in read-only proc", Dest, "/proc/self", "is not writable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check(tt.path)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("check(%s) = %v, want %q", tt.path, err, tt.wantErr)
			}
		})
	}
}

func TestOverlap(t *testing.T) {
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
			err := Overlap(tt.source, tt.dest)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Overlap(%s, %s) = %v, want %q", tt.source, tt.dest, err, tt.wantErr)
			}
		})
	}
}
