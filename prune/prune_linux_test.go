package prune

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/fpart"
)

// tree builds entries below root: a path ending in "/" is a directory, "name->target" a
// symlink, anything else a file.
func tree(t *testing.T, root string, entries ...string) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(root, e)
		switch {
		case e[len(e)-1] == '/':
			must(t, os.MkdirAll(p, 0o755))
		case strings.Contains(e, "->"):
			name, target, _ := strings.Cut(e, "->")
			must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755))
			must(t, os.Symlink(target, filepath.Join(root, name)))
		default:
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			must(t, os.WriteFile(p, []byte(e), 0o644))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// list returns every path below root, sorted, directories with a trailing "/".
func list(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	}))
	slices.Sort(out)
	return out
}

func TestDirs(t *testing.T) {
	world := t.TempDir()
	src, dst, outside := filepath.Join(world, "src"), filepath.Join(world, "dst"), filepath.Join(world, "outside")
	tree(t, outside, "secret", "sub/secret")
	tree(t, src, "a/f", "a/b/", "keep-me", "x.keep-src")
	tree(t, dst,
		"a/f", "a/b/", "keep-me",
		"extra", "a/extra", "a/b/deep/er/file", // extraneous: go
		"x.keep", "a/gone/y.keep", "a/gone/other", // excluded, and a lost directory holding one
		"out->"+outside, "a/b/outdir->"+outside+"/sub", // symlinks out: go as links
		".krsync-tmp-1/partial", "state/dir/journal.db", // krsync's own
		".krsync-tmp-1.p3-a1-xyz/big.AbC",      // an rsync run's own: kept by KeepPrefix
		".krsync-tmp-1x", "a/.krsync-tmp-1.p3", // look-alikes: not krsync's, extraneous
	)
	filter := fpart.NewFilter(fpart.Options{Exclude: []string{"*.keep"}}, src)
	var reported []string
	cfg := Config{Source: src, Dest: dst, Filter: filter, Keep: []string{".krsync-tmp-1", "state/dir"}, KeepPrefix: []string{".krsync-tmp-1."},
		Deleted: func(rel string, isDir bool) { reported = append(reported, rel) }}

	dry := cfg
	dry.DryRun = true
	before := list(t, dst)
	res, err := Dirs(context.Background(), dry, []string{".", "a", "a/b"})
	must(t, err)
	if got := list(t, dst); !slices.Equal(got, before) {
		t.Fatalf("a dry run changed the destination: %q, was %q", got, before)
	}
	dryReported := slices.Clone(reported)
	reported = nil

	res2, err := Dirs(context.Background(), cfg, []string{".", "a", "a/b"})
	must(t, err)
	want := []string{
		".krsync-tmp-1.p3-a1-xyz/", ".krsync-tmp-1.p3-a1-xyz/big.AbC",
		".krsync-tmp-1/", ".krsync-tmp-1/partial", "a/", "a/b/", "a/f", "a/gone/", "a/gone/y.keep",
		"keep-me", "state/", "state/dir/", "state/dir/journal.db", "x.keep",
	}
	if got := list(t, dst); !slices.Equal(got, want) {
		t.Errorf("destination after the prune:\n got %q\nwant %q", got, want)
	}
	if res.Deleted != res2.Deleted || !slices.Equal(dryReported, reported) {
		t.Errorf("the dry run reported %d %q, the prune deleted %d %q", res.Deleted, dryReported, res2.Deleted, reported)
	}
	if got := list(t, outside); !slices.Equal(got, []string{"secret", "sub/", "sub/secret"}) {
		t.Errorf("outside the destination changed: %q", got)
	}
}

// TestDirsKeepsWhatTheSourceHasNow: the lookup is in the source as it is at deletion time.
func TestDirsKeepsWhatTheSourceHasNow(t *testing.T) {
	world := t.TempDir()
	src, dst := filepath.Join(world, "src"), filepath.Join(world, "dst")
	tree(t, src, "d/")
	tree(t, dst, "d/new", "d/newdir/f", "d/old")
	tree(t, src, "d/new", "d/newdir/") // gained after the walk listed d
	res, err := Dirs(context.Background(), Config{Source: src, Dest: dst}, []string{"d"})
	must(t, err)
	if got := list(t, dst); !slices.Equal(got, []string{"d/", "d/new", "d/newdir/", "d/newdir/f"}) || res.Deleted != 1 {
		t.Errorf("got %q, %d deleted; want d/old deleted only", got, res.Deleted)
	}
}

func TestMakeWay(t *testing.T) {
	world := t.TempDir()
	src, dst := filepath.Join(world, "src"), filepath.Join(world, "dst")
	tree(t, src, "f", "l->f", "d/", "excl")
	tree(t, dst, "f/inner/x", "l/y", "d/z", "excl/a.keep", "excl/b")
	filter := fpart.NewFilter(fpart.Options{Exclude: []string{"*.keep"}}, src)
	res, err := MakeWay(context.Background(), Config{Source: src, Dest: dst, Filter: filter}, []string{"f", "l", "d", "excl", "missing"})
	must(t, err)
	// f and l are files and symlinks in the source: their directories go; d stays a
	// directory (rsync's business); excl keeps its excluded file, so it stays.
	if got := list(t, dst); !slices.Equal(got, []string{"d/", "d/z", "excl/", "excl/a.keep"}) || res.Deleted != 6 {
		t.Errorf("got %q, %d deleted", got, res.Deleted)
	}
}

func TestBadPaths(t *testing.T) {
	world := t.TempDir()
	src, dst := filepath.Join(world, "src"), filepath.Join(world, "dst")
	tree(t, src, "d/")
	tree(t, dst, "d/")
	_, err := Dirs(context.Background(), Config{Source: src, Dest: dst}, []string{"../x", "/etc"})
	var perr *Error
	if !errors.As(err, &perr) || perr.Count != 2 || !errors.Is(err, ErrBadPath) {
		t.Errorf("err = %v; want both paths refused", err)
	}
}

// TestDirsLeavesOtherMountsAlone: an extraneous destination directory on which another file
// system is mounted (here a bind mount, one device but another mount) is not emptied: it is
// named as not pruned, and what it holds stays; the other extraneous entries go.
func TestDirsLeavesOtherMountsAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind-mount")
	}
	src, dst, vol := t.TempDir(), t.TempDir(), t.TempDir()
	precious := filepath.Join(vol, "precious")
	if err := os.WriteFile(precious, []byte("not the destination's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"mnt", "gone"} {
		if err := os.Mkdir(filepath.Join(dst, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(vol, filepath.Join(dst, "mnt"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(dst, "mnt"), unix.MNT_DETACH) })
	_, err := Dirs(context.Background(), Config{Source: src, Dest: dst}, []string{"."})
	var perr *Error
	if !errors.As(err, &perr) || !strings.Contains(err.Error(), "mnt") || !errors.Is(err, errOtherMount) {
		t.Errorf("Dirs = %v; want an *Error naming mnt as another mount", err)
	}
	if data, err := os.ReadFile(precious); err != nil || string(data) != "not the destination's\n" {
		t.Errorf("the mounted file system's file: %q, %v", data, err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the extraneous directory beside the mount: %v, want it deleted", err)
	}
}
