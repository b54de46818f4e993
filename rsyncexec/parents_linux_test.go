package rsyncexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/internal/testing/testbin"
)

// TestRunRefusesSymlinkedParents: an entry below a symlink that leads out of the source is
// not copied (rsync's sender would follow it), the partition's other entries are, and the
// error names the refused entries and is not worth a retry. A symlink as the entry itself is
// copied as a link.
func TestRunRefusesSymlinkedParents(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name    string
		list    []string
		dirs    bool
		refused []string
		copied  []string
	}{
		{"symlinked top-level parent", []string{"ok", "lnk/secret", "d/f"}, false, []string{"lnk/secret"}, []string{"ok", "d/f"}},
		{"symlink deeper in the chain", []string{"d/inner/secret", "ok"}, false, []string{"d/inner/secret"}, []string{"ok"}},
		{"first and last entries", []string{"lnk/secret", "ok", "d/inner/deeper/x"}, false, []string{"lnk/secret", "d/inner/deeper/x"}, []string{"ok"}},
		{"the entry itself is a symlink: copied as a link", []string{"lnk", "d/inner"}, false, nil, []string{"lnk", "d/inner"}},
		{"directory pass", []string{"d", "lnk/sub"}, true, []string{"lnk/sub"}, nil},
		{"only refused entries: rsync not run", []string{"lnk/secret", "lnk/sub"}, false, []string{"lnk/secret", "lnk/sub"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
			makeTree(t, outside, []entry{
				{path: "secret", content: "not yours", mode: 0o600, uid: -1, gid: -1},
				{path: "sub", mode: os.ModeDir | 0o700, uid: -1, gid: -1},
				{path: "deeper/x", content: "x", mode: 0o600, uid: -1, gid: -1},
			})
			makeTree(t, src, []entry{
				{path: "ok", content: "fine", mode: 0o644, uid: -1, gid: -1},
				{path: "d/f", content: "fine too", mode: 0o644, uid: -1, gid: -1},
				{path: "lnk", mode: os.ModeSymlink, content: outside, uid: -1, gid: -1},
				{path: "d/inner", mode: os.ModeSymlink, content: outside, uid: -1, gid: -1},
			})
			res, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list(tt.list...), Dirs: tt.dirs})
			var refused *RefusedError
			switch {
			case tt.refused == nil && err != nil:
				t.Fatalf("Run: %v", err)
			case tt.refused != nil && !errors.As(err, &refused):
				t.Fatalf("Run = %v, want a *RefusedError", err)
			case tt.refused != nil:
				if !reflect.DeepEqual(refused.Paths, tt.refused) || refused.Count != len(tt.refused) || refused.Err != nil {
					t.Errorf("refused %q (count %d, rsync error %v); want %q", refused.Paths, refused.Count, refused.Err, tt.refused)
				}
				if Retryable(err) || !errors.Is(err, ErrSymlinkParent) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q: want one line, not retryable, wrapping ErrSymlinkParent", err)
				}
			}
			if strings.HasPrefix(tt.name, "only refused") && res.Args != nil {
				t.Errorf("rsync ran: %q", res.Args)
			}
			for _, p := range tt.copied {
				if _, err := os.Lstat(filepath.Join(dst, p)); err != nil {
					t.Errorf("%s not copied: %v", p, err)
				}
			}
			var found []string
			_ = filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
				if err == nil && (d.Name() == "secret" || d.Name() == "x" || d.Name() == "sub") {
					found = append(found, p)
				}
				return nil
			})
			if len(found) > 0 {
				t.Errorf("read through a symlink out of the source: %q", found)
			}
		})
	}
}

// deepPath makes, below root, n directories of 200-byte names one inside the other (their
// path together far beyond PATH_MAX, so through directory descriptors) with a file f at the
// bottom, and returns the file's path relative to root.
func deepPath(t *testing.T, root, prefix string, n int) string {
	t.Helper()
	fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rel []string
	for i := range n {
		name := fmt.Sprintf("%s%02d%s", prefix, i, strings.Repeat("y", 200))
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd, rel = next, append(rel, name)
	}
	defer unix.Close(fd)
	f, err := unix.Openat(fd, "f", unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(f)
	return strings.Join(append(rel, "f"), "/")
}

// TestRunRefusesPathsTooLong: rsync cannot name a file whose path is PATH_MAX bytes or
// longer and says it is missing, as if it had vanished; such entries (first, last, in the
// source or only in the destination) are refused and named, not counted as vanished, and
// the others are copied.
func TestRunRefusesPathsTooLong(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dstBase := t.TempDir(), t.TempDir()
	makeTree(t, src, []entry{{path: "ok", content: "fine", mode: 0o644, uid: -1, gid: -1}})
	first := deepPath(t, src, "a", 21) // about 4,300 bytes
	last := deepPath(t, src, "b", 21)
	nearly := deepPath(t, src, "c", 18) // about 3,700 bytes: fits below src, not below a deep dest
	// A destination 600 bytes deep: nearly's path there is too long, not in the source.
	dst := filepath.Join(dstBase, strings.Repeat("d", 200), strings.Repeat("e", 200), strings.Repeat("f", 200))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list(first, "ok", nearly, last)})
	var refused *RefusedError
	if !errors.As(err, &refused) || !errors.Is(err, ErrPathTooLong) || Retryable(err) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run = %v; want a one-line, not retryable *RefusedError wrapping ErrPathTooLong", err)
	}
	if want := []string{first, nearly, last}; !reflect.DeepEqual(refused.AllPaths(), want) || refused.Count != 3 {
		t.Errorf("refused %d: %q; want %q", refused.Count, refused.AllPaths(), want)
	}
	if res.VanishedCount != 0 {
		t.Errorf("%d entries counted as vanished: %q", res.VanishedCount, res.Vanished)
	}
	if _, err := os.Stat(filepath.Join(dst, "ok")); err != nil {
		t.Errorf("ok not copied: %v", err)
	}
}
