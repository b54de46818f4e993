package rsyncexec

import (
	"bytes"
	"context"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
)

// commentLikeTree holds names that rsync's --files-from reader takes for comments ('#', ';'
// at the start of a line, even with --from0) or for options, at the top and deep down.
func commentLikeTree() []entry {
	return []entry{
		{path: "#top", content: "hash", mode: 0o644, uid: -1, gid: -1},
		{path: ";semi", content: "semicolon", mode: 0o644, uid: -1, gid: -1},
		{path: "#dir/inner", content: "inside a #dir", mode: 0o644, uid: -1, gid: -1},
		{path: "#dir/;deeper/#deepest", content: "deep", mode: 0o644, uid: -1, gid: -1},
		{path: "-dash", content: "dash", mode: 0o644, uid: -1, gid: -1},
		{path: "new\nline", content: "newline", mode: 0o644, uid: -1, gid: -1},
		{path: "\n#after-newline", content: "a line of its own that starts with #", mode: 0o644, uid: -1, gid: -1},
		{path: "plain/#deep", content: "deep hash", mode: 0o644, uid: -1, gid: -1},
		{path: "plain/;deep", content: "deep semicolon", mode: 0o644, uid: -1, gid: -1},
		{path: "plain/-deep", content: "deep dash", mode: 0o644, uid: -1, gid: -1},
		{path: "plain/new\nline", content: "deep newline", mode: 0o644, uid: -1, gid: -1},
		{path: "#empty", mode: os.ModeDir | 0o750, uid: -1, gid: -1},
	}
}

// TestRunCommentLikeNames copies names that rsync would read as comments, with each of them
// as the first and as the last entry of the list, in every list mode (arguments, the list on
// stdin, in a file); then the directory pass sets the metadata of directories so named.
func TestRunCommentLikeNames(t *testing.T) {
	rsync := testbin.Rsync(t)
	entries := commentLikeTree()
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.path)
	}
	orders := []struct {
		name  string
		order []string
	}{
		{"hostile names first", paths},
		{"hostile names last", append([]string{"plain"}, paths...)},
		{"reversed", reversed(paths)},
		{"each hostile name alone", nil},
	}
	for _, mode := range listModes {
		for _, tt := range orders {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				src := t.TempDir()
				makeTree(t, src, entries)
				lists := [][]string{tt.order}
				if tt.order == nil {
					lists = nil
					for _, p := range paths {
						lists = append(lists, []string{p})
					}
				}
				dst := t.TempDir()
				for _, l := range lists {
					res, err := Run(context.Background(), mode.apply(t, Job{Binary: rsync, Source: src, Dest: dst, List: list(l...)}))
					if err != nil {
						t.Fatalf("Run(%q): %v", l, err)
					}
					mode.check(t, res.Args)
				}
				// The directories' metadata, as the coordinator's last partition sets it.
				res, err := Run(context.Background(), mode.apply(t, Job{Binary: rsync, Source: src, Dest: dst, Dirs: true,
					List: list(".", "#dir", "#dir/;deeper", "plain", "#empty")}))
				if err != nil {
					t.Fatalf("directory pass: %v", err)
				}
				mode.check(t, res.Args)
				srcTree, dstTree := readTree(t, src), readTree(t, dst)
				if diffs := diffTrees(srcTree, dstTree, nil, true); len(diffs) > 0 {
					t.Errorf("destination differs from source:\n%s", strings.Join(diffs, "\n"))
				}
			})
		}
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// FuzzCleanList: whatever the coordinator sends, every entry given to rsync starts with "./"
// (so it can never be a comment line), holds no ".." component and is not absolute; lists
// with such paths are refused whole.
func FuzzCleanList(f *testing.F) {
	for _, seed := range [][]byte{
		list("a", "b/c"), list("#top", ";semi", "#dir/inner"), list(".", "./", "x/"),
		list("a/../b"), list("/etc/passwd"), []byte("no-final-nul"), list("-x", "a\nb", "\xff"),
		list("./#x", "..a", "a/./b"), {0, 0, '#', 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := cleanList(in)
		if err != nil {
			return
		}
		if len(out) > 0 && out[len(out)-1] != 0 {
			t.Fatalf("cleanList(%q) = %q: no final NUL", in, out)
		}
		for _, e := range bytes.Split(bytes.TrimSuffix(out, []byte{0}), []byte{0}) {
			if len(out) == 0 {
				break
			}
			p := string(e)
			if !strings.HasPrefix(p, "./") || len(p) == 2 {
				t.Fatalf("cleanList(%q): entry %q does not start with ./NAME", in, p)
			}
			if path.IsAbs(p) || path.Clean(p[2:]) != p[2:] || p[2:] == "." {
				t.Fatalf("cleanList(%q): entry %q is not clean", in, p)
			}
			for _, part := range strings.Split(p, "/") {
				if part == ".." {
					t.Fatalf("cleanList(%q): entry %q has a .. component", in, p)
				}
			}
		}
	})
}
