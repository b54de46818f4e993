package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/krsync/krsync/leaseapi"
)

func TestIsTempFor(t *testing.T) {
	long := strings.Repeat("L", 251) + ".txt"
	bases := map[string]bool{"file": true, "with space": true, long: true}
	tests := []struct {
		name string
		want bool
	}{
		{".file.AbC123", true},
		{".with space.zzzzzz", true},
		{"." + long[:247] + ".Q1w2E3", true},
		{".file.AbC12", false},   // suffix too short
		{".file.AbC12!", false},  // not mkstemp's alphabet
		{"file.AbC123", false},   // no leading dot
		{".other.AbC123", false}, // not a listed name
		{".fil.AbC123", false},   // short names are never shortened
		{".file", false},
	}
	for _, tt := range tests {
		if got := isTempFor(tt.name, bases); got != tt.want {
			t.Errorf("isTempFor(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRemoveTempFilesKeepsData(t *testing.T) {
	src, dest := t.TempDir(), t.TempDir()
	write := func(root, rel string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range []string{"d/a", "d/.a.Keep01", "b"} {
		write(src, rel)
	}
	// Leftovers of a killed rsync, a source file with a look-alike name, an unlisted file's.
	for _, rel := range []string{"d/.a.Xy12Zq", "d/.a.Keep01", ".b.000000", "d/.c.Xy12Zq"} {
		write(dest, rel)
	}
	list := leaseapi.JoinList([]string{"d", "d/a", "d/.a.Keep01", "b"})
	if n := removeTempFiles(src, dest, list, 1); n != 0 {
		t.Errorf("removed %d files from directories larger than the limit", n)
	}
	if n := removeTempFiles(src, dest, list, 0); n != 2 {
		t.Errorf("removed %d files, want 2", n)
	}
	for rel, want := range map[string]bool{"d/.a.Xy12Zq": false, ".b.000000": false, "d/.a.Keep01": true, "d/.c.Xy12Zq": true} {
		_, err := os.Lstat(filepath.Join(dest, rel))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", rel, got, want)
		}
	}
}
