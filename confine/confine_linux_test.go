package confine

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenDir checks the resolver with openat2 and its fallback for kernels without it
// (one O_NOFOLLOW open per component) against the same cases.
func TestOpenDir(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	mustDo(t, os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(root, "a/file"), []byte("f"), 0o644))
	mustDo(t, os.Symlink(outside, filepath.Join(root, "a/lnk")))
	mustDo(t, os.Symlink("b", filepath.Join(root, "a/rel")))
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tests := []struct {
		rel  string
		want error // nil: opens
	}{
		{"a", nil},
		{"a/b/c", nil},
		{".", nil},
		{"a/lnk", unix.ELOOP},
		{"a/lnk/x", unix.ELOOP},
		{"a/rel", unix.ELOOP}, // even a symlink that stays inside
		{"a/file", unix.ENOTDIR},
		{"a/missing", unix.ENOENT},
		{"a/../..", unix.EXDEV},
	}
	for name, open := range map[string]func(int, string, int) (int, error){"openat2": OpenDir, "fallback": openDirWalk} {
		for _, tt := range tests {
			got, err := open(fd, tt.rel, unix.O_PATH)
			if err == nil {
				unix.Close(got)
			}
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Errorf("%s(%q) = %v, want %v", name, tt.rel, err, tt.want)
			}
		}
	}
}

// TestRemoveTree: a tree with a symlink to a directory outside goes whole, the link as a
// link; the outside directory keeps its file. A symlink or a file as the named directory is
// refused and left alone.
func TestRemoveTree(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	mustDo(t, os.WriteFile(filepath.Join(outside, "keep"), []byte("k"), 0o644))
	mustDo(t, os.MkdirAll(filepath.Join(root, "d/e"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(root, "d/e/f"), []byte("f"), 0o644))
	mustDo(t, os.Symlink(outside, filepath.Join(root, "d/lnk")))
	mustDo(t, os.Symlink(outside, filepath.Join(root, "lnk")))
	mustDo(t, os.WriteFile(filepath.Join(root, "file"), []byte("f"), 0o644))
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := RemoveTree(fd, "d"); err != nil {
		t.Fatalf("RemoveTree(d): %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("d is still there: %v", err)
	}
	if err := RemoveTree(fd, "lnk"); err == nil {
		t.Error("RemoveTree(lnk) followed or removed a symlink")
	}
	if err := RemoveTree(fd, "file"); err == nil {
		t.Error("RemoveTree(file) removed a file")
	}
	if err := RemoveTree(fd, "missing"); err != nil {
		t.Errorf("RemoveTree(missing) = %v, want nil", err)
	}
	for _, p := range []string{filepath.Join(outside, "keep"), filepath.Join(root, "lnk"), filepath.Join(root, "file")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
