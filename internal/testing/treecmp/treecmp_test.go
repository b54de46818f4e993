package treecmp_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/internal/testing/treecmp"
)

// fixture builds a small tree with one of each kind of entry, by hand so this package's
// tests do not depend on the generator they are used to check.
func fixture(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "a")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "dir/sub"), 0o755))
	must(os.Mkdir(filepath.Join(root, "empty"), 0o755))
	must(os.Mkdir(filepath.Join(root, "links"), 0o755))
	must(os.WriteFile(filepath.Join(root, "file"), []byte("hello world"), 0o644))
	must(os.WriteFile(filepath.Join(root, "dir/new\nline"), []byte("newline"), 0o600))
	must(os.WriteFile(filepath.Join(root, "dir/sub/deep"), []byte("deep"), 0o644))
	must(os.WriteFile(filepath.Join(root, "twin-1"), []byte("same bytes"), 0o644))
	must(os.WriteFile(filepath.Join(root, "twin-2"), []byte("same bytes"), 0o644))
	must(os.WriteFile(filepath.Join(root, "suid"), []byte("#!/bin/sh\n"), 0o755))
	must(syscall.Chmod(filepath.Join(root, "suid"), 0o4755))
	must(os.Link(filepath.Join(root, "file"), filepath.Join(root, "dir/file-link")))
	must(os.Symlink("../file", filepath.Join(root, "links/rel")))
	must(os.Symlink("nowhere", filepath.Join(root, "links/dangling")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	old := time.Date(2011, 3, 4, 5, 6, 7, 890123456, time.UTC)
	for _, rel := range []string{"file", "dir/new\nline", "dir/sub/deep", "twin-1", "twin-2", "suid", "fifo", "dir/sub", "dir", "empty", "links", "."} {
		must(os.Chtimes(filepath.Join(root, rel), old, old))
	}
	return root
}

// copyTree copies with cp -a, which keeps modes, owners, times, links and hard links.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "b")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Skipf("cp -a: %v: %s", err, out)
	}
	return dst
}

func TestCompareEqualCopies(t *testing.T) {
	a := fixture(t)
	b := copyTree(t, a)
	// Reading changes atimes only, which must not count.
	if _, err := os.ReadFile(filepath.Join(b, "file")); err != nil {
		t.Fatal(err)
	}
	later := time.Now()
	if err := os.Chtimes(filepath.Join(b, "dir/sub/deep"), later, time.Time{}); err != nil {
		t.Fatal(err)
	}
	diffs, err := treecmp.Compare(a, b, treecmp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Fatalf("a copy differs:\n%s", treecmp.Format(diffs, 20))
	}
	if err := treecmp.Equal(a, b, treecmp.Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestCompareDetects mutates a copy in one way per case and checks exactly that kind of
// difference is reported at that path.
func TestCompareDetects(t *testing.T) {
	old := time.Date(2011, 3, 4, 5, 6, 7, 890123456, time.UTC)
	tests := []struct {
		name   string
		opts   treecmp.Options
		mutate func(b string) error
		path   string
		kind   treecmp.Kind
	}{
		{"missing file", treecmp.Options{}, func(b string) error { return os.Remove(filepath.Join(b, "twin-1")) }, "twin-1", treecmp.Missing},
		{"missing directory, reported once", treecmp.Options{}, func(b string) error {
			if err := os.RemoveAll(filepath.Join(b, "dir/sub")); err != nil {
				return err
			}
			return os.Chtimes(filepath.Join(b, "dir"), old, old)
		}, "dir/sub", treecmp.Missing},
		{"extra file", treecmp.Options{}, func(b string) error { return os.WriteFile(filepath.Join(b, "empty/extra"), nil, 0o644) }, "empty/extra", treecmp.Extra},
		{"file became a directory", treecmp.Options{}, func(b string) error {
			if err := os.Remove(filepath.Join(b, "twin-2")); err != nil {
				return err
			}
			return os.Mkdir(filepath.Join(b, "twin-2"), 0o644)
		}, "twin-2", treecmp.Type},
		{"fifo became a file", treecmp.Options{}, func(b string) error {
			if err := os.Remove(filepath.Join(b, "fifo")); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(b, "fifo"), nil, 0o644)
		}, "fifo", treecmp.Type},
		{"permission bits", treecmp.Options{}, func(b string) error { return os.Chmod(filepath.Join(b, "file"), 0o600) }, "file", treecmp.Mode},
		{"setuid lost", treecmp.Options{}, func(b string) error { return syscall.Chmod(filepath.Join(b, "suid"), 0o755) }, "suid", treecmp.Mode},
		{"setgid on a directory", treecmp.Options{}, func(b string) error { return syscall.Chmod(filepath.Join(b, "dir"), 0o2755) }, "dir", treecmp.Mode},
		{"sticky on the root", treecmp.Options{}, func(b string) error { return syscall.Chmod(b, 0o1755) }, ".", treecmp.Mode},
		{"owner", treecmp.Options{}, func(b string) error { return os.Lchown(filepath.Join(b, "twin-1"), 4242, -1) }, "twin-1", treecmp.UID},
		{"group", treecmp.Options{}, func(b string) error { return os.Lchown(filepath.Join(b, "twin-1"), -1, 4243) }, "twin-1", treecmp.GID},
		{"owner of a symlink", treecmp.Options{}, func(b string) error { return os.Lchown(filepath.Join(b, "links/rel"), 99, -1) }, "links/rel", treecmp.UID},
		{"size", treecmp.Options{}, func(b string) error { return appendTo(filepath.Join(b, "twin-1"), "x", old) }, "twin-1", treecmp.Size},
		{"content with size and mtime kept", treecmp.Options{}, func(b string) error {
			return rewrite(filepath.Join(b, "dir/new\nline"), "NEWLINE", old)
		}, "dir/new\nline", treecmp.Content},
		{"file mtime", treecmp.Options{}, func(b string) error { return os.Chtimes(filepath.Join(b, "file"), old, old.Add(time.Second)) }, "file", treecmp.Mtime},
		{"file mtime by one nanosecond", treecmp.Options{}, func(b string) error {
			return os.Chtimes(filepath.Join(b, "dir/sub/deep"), old, old.Add(time.Nanosecond))
		}, "dir/sub/deep", treecmp.Mtime},
		{"directory mtime", treecmp.Options{}, func(b string) error { return os.Chtimes(filepath.Join(b, "dir/sub"), old, time.Now()) }, "dir/sub", treecmp.Mtime},
		{"root mtime", treecmp.Options{}, func(b string) error { return os.Chtimes(b, old, time.Now()) }, ".", treecmp.Mtime},
		{"fifo mtime", treecmp.Options{}, func(b string) error { return os.Chtimes(filepath.Join(b, "fifo"), old, time.Now()) }, "fifo", treecmp.Mtime},
		{"symlink target", treecmp.Options{}, func(b string) error { return relink(filepath.Join(b, "links/dangling"), "elsewhere") }, "links/dangling", treecmp.Target},
		{"symlink own mtime when asked", treecmp.Options{SymlinkTimes: true}, func(b string) error {
			return lutimes(filepath.Join(b, "links/rel"), time.Unix(1, 0))
		}, "links/rel", treecmp.Mtime},
		{"hard link broken into a copy", treecmp.Options{}, func(b string) error {
			return breakLink(filepath.Join(b, "dir/file-link"), old)
		}, "dir/file-link", treecmp.HardLink},
		{"separate files hard-linked", treecmp.Options{}, func(b string) error {
			if err := os.Remove(filepath.Join(b, "twin-2")); err != nil {
				return err
			}
			return os.Link(filepath.Join(b, "twin-1"), filepath.Join(b, "twin-2"))
		}, "twin-2", treecmp.HardLink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.name, "owner") || tt.kind == treecmp.GID {
				if os.Geteuid() != 0 {
					t.Skip("chown to another owner needs root")
				}
			}
			a := fixture(t)
			b := copyTree(t, a)
			if err := tt.mutate(b); err != nil {
				t.Fatalf("mutate: %v", err)
			}
			diffs, err := treecmp.Compare(a, b, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, d := range diffs {
				if d.Path == tt.path && d.Kind == tt.kind {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s difference at %q; got:\n%s", tt.kind, tt.path, treecmp.Format(diffs, 20))
			}
			if tt.name == "missing directory, reported once" && len(diffs) != 1 {
				t.Errorf("want one difference for a missing directory, got:\n%s", treecmp.Format(diffs, 20))
			}
			// The reverse comparison sees it too (missing becomes extra and so on).
			if back, err := treecmp.Compare(b, a, tt.opts); err != nil || len(back) == 0 {
				t.Errorf("reverse comparison found nothing (%v)", err)
			}
		})
	}
}

func TestCompareSymlinkTimesOffByDefault(t *testing.T) {
	a := fixture(t)
	b := copyTree(t, a)
	if err := lutimes(filepath.Join(b, "links/rel"), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	diffs, err := treecmp.Compare(a, b, treecmp.Options{})
	if err != nil || len(diffs) > 0 {
		t.Fatalf("symlink mtime counted without SymlinkTimes (%v):\n%s", err, treecmp.Format(diffs, 5))
	}
}

func TestCompareExclude(t *testing.T) {
	a := fixture(t)
	b := copyTree(t, a)
	if err := os.MkdirAll(filepath.Join(b, ".state/x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(b, time.Now(), time.Date(2011, 3, 4, 5, 6, 7, 890123456, time.UTC)); err != nil {
		t.Fatal(err)
	}
	opts := treecmp.Options{Exclude: func(rel string) bool { return rel == ".state" }}
	if err := treecmp.Equal(a, b, opts); err != nil {
		t.Fatalf("excluded path still compared: %v", err)
	}
}

func TestDifferenceStringQuotesPaths(t *testing.T) {
	d := treecmp.Difference{Path: "a\nb", Kind: treecmp.Mode, A: "0644", B: "0600"}
	if got, want := d.String(), `mode "a\nb": 0644 != 0600`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func appendTo(path, s string, mtime time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chtimes(path, mtime, mtime)
}

func rewrite(path, s string, mtime time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(s), 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chtimes(path, mtime, mtime)
}

func relink(path, target string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	return os.Symlink(target, path)
}

func lutimes(path string, mtime time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// breakLink replaces a hard link with a copy of identical bytes, mode and mtime.
func breakLink(path string, mtime time.Time) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, info.Mode().Perm()); err != nil {
		return err
	}
	if err := os.Chmod(path, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Chtimes(path, mtime, mtime)
}
