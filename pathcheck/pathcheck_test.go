package pathcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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

// TestOverlapThroughABindMount: a source or destination that lies inside the other only
// through a bind mount (one volume mounted twice, as two subPaths of one claim are) is
// refused, in both directions; a bind mount of an unrelated directory is not.
func TestOverlapThroughABindMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind-mount")
	}
	base := t.TempDir()
	mk := func(rel string) string {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bind := func(from, to string) {
		if err := unix.Mount(from, to, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s on %s: %v", from, to, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(to, unix.MNT_DETACH) })
	}
	dest, inDest, other := mk("dest"), mk("dest/data/sub"), mk("other")
	aliasIn, aliasOther := mk("alias-in"), mk("alias-other")
	bind(inDest, aliasIn)
	bind(other, aliasOther)
	tests := []struct {
		name, source, dest, want string
	}{
		{"source inside the destination through a bind mount", aliasIn, dest, "inside the destination"},
		{"destination inside the source through a bind mount", dest, aliasIn, "inside the source"},
		{"a bind mount of an unrelated directory", aliasOther, dest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Overlap(tt.source, tt.dest)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Overlap(%s, %s) = %v; want %q", tt.source, tt.dest, err, tt.want)
			}
		})
	}
}
