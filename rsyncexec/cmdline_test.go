package rsyncexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/internal/testing/testbin"
)

// argNamesTree holds names that a command line could misread: host specs (host:path,
// rsync://, ::module, [v6]:port, user@host:), glob characters beside the names they would
// match, backslashes, options, comments, newlines and invalid UTF-8, at the top and deeper.
func argNamesTree() (entries []entry, listed []string) {
	f := func(p string) entry { return entry{path: p, content: "content of " + p, mode: 0o644, uid: -1, gid: -1} }
	for _, p := range []string{
		"host:path", "rsync::module", "a:b", "user@host:x", "[::1]:22", "rsync:", ":colon", "rsync:x",
		"star*", "q?", "[ab]", `back\slash`, `back\*`, "-dash", "--delete", "#hash", ";semi",
		"new\nline", "\xff\xfeinvalid", "sp ace",
		"d/host:path", "d/star*", "d/[ab]", "rsync:d/x", "host:dir/rsync::y",
	} {
		entries = append(entries, f(p))
		listed = append(listed, p)
	}
	// What a glob or a backslash escape would have matched: present, never listed.
	for _, p := range []string{"starX", "qX", "a", "b", "backslash", `back\X`, "d/starX", "d/a"} {
		entries = append(entries, f(p))
	}
	return entries, listed
}

// TestRunArgumentNames copies names that look like remote specs, globs or options, from
// source roots whose own path holds ':' and spaces or is relative, in every list mode: only
// the listed names arrive, intact.
func TestRunArgumentNames(t *testing.T) {
	rsync := testbin.Rsync(t)
	roots := []struct {
		name     string
		dir      string // below a fresh temporary directory
		relative bool   // given to Run relative to the working directory
	}{
		{name: "plain root", dir: "src"},
		{name: "root with a colon and a space", dir: "host:root dir"},
		{name: "root like a daemon module", dir: "rsync:/x::module"},
		{name: "relative root", dir: "rel:src dir", relative: true},
	}
	for _, mode := range listModes {
		for _, root := range roots {
			t.Run(mode.name+"/"+root.name, func(t *testing.T) {
				base := t.TempDir()
				src := filepath.Join(base, root.dir)
				entries, listed := argNamesTree()
				makeTree(t, src, entries)
				source := src
				if root.relative {
					t.Chdir(base)
					source = root.dir
				}
				dst := t.TempDir()
				res, err := Run(context.Background(), mode.apply(t, Job{Binary: rsync, Source: source, Dest: dst, List: list(listed...)}))
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				mode.check(t, res.Args)
				if res.FilesTransferred != int64(len(listed)) {
					t.Errorf("%d files transferred, want %d", res.FilesTransferred, len(listed))
				}
				dstTree := readTree(t, dst)
				var got []string
				for p, fi := range dstTree {
					if fi.mode&unix.S_IFMT == unix.S_IFREG {
						got = append(got, p)
					}
				}
				want := append([]string(nil), listed...)
				sort.Strings(got)
				sort.Strings(want)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("files in the destination:\n%q\nwant exactly the listed ones:\n%q", got, want)
				}
				if diffs := diffTrees(readTree(t, src), dstTree, listed, true); len(diffs) > 0 {
					t.Errorf("destination differs from source:\n%s", strings.Join(diffs, "\n"))
				}
			})
		}
	}
}

// TestRunArgumentsFallback: the entries go through --files-from when they do not fit on a
// command line, and the copy is the same either way; a listed directory is never recursed
// into, whatever -a says; a missing source still fails at once (exit 3).
func TestRunArgumentsFallback(t *testing.T) {
	rsync := testbin.Rsync(t)
	base := t.TempDir()
	// The destinations' paths are not longer than the source's: readTree reads full paths.
	src := filepath.Join(base, "source-"+strings.Repeat("s", 20))
	// Arguments of about 3,900 bytes (within rsync's 4,095, MAXPATHLEN-1), enough of them
	// for more than execve allows: a quarter of the stack limit, at most 6 MiB (fs/exec.c).
	deep := pathOfLen(3800)
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_STACK, &rl); err != nil {
		t.Fatal(err)
	}
	argMax := uint64(6 << 20)
	if rl.Cur != unix.RLIM_INFINITY {
		argMax = max(min(rl.Cur/4, argMax), 128<<10)
	}
	var many []string
	for i := range int(argMax/3800) + 50 {
		many = append(many, fmt.Sprintf("%s/f%05d", deep, i))
	}
	// One byte more than rsync reads of an argument SOURCE/./NAME, while SOURCE/NAME is a
	// valid path (and a valid --files-from line "./NAME").
	tooLong := pathOfLen(maxArgPathLen + 1 - len(src+"/./"))
	var entries []entry
	for _, p := range append([]string{"f1", "d/f2", tooLong}, many...) {
		entries = append(entries, entry{path: p, content: "x", mode: 0o644, uid: -1, gid: -1})
	}
	makeTree(t, src, entries)

	tests := []struct {
		name        string
		args        []string
		maxArgBytes int
		list        []string
		wantFrom    bool     // --files-from expected
		absent      []string // must not be copied
	}{
		{name: "fits", list: []string{"f1", "d/f2"}},
		{name: "over the byte budget", maxArgBytes: 100, list: []string{"f1", "d/f2"}, wantFrom: true},
		{name: "an argument too long for rsync's path buffer", list: []string{"f1", tooLong}, wantFrom: true},
		{name: "execve refuses the command line", maxArgBytes: 1 << 30, list: many, wantFrom: true},
		{name: "a listed directory is copied, not recursed into", args: []string{"-a", "--numeric-ids", "-H"}, list: []string{"d", "f1"}, absent: []string{"d/f2"}},
		{name: "the same with --files-from", args: []string{"-a"}, maxArgBytes: -1, list: []string{"d"}, wantFrom: true, absent: []string{"d/f2", "f1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst, err := os.MkdirTemp(base, "")
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), Job{Binary: rsync, Args: tt.args, Source: src, Dest: dst, List: list(tt.list...), MaxArgBytes: tt.maxArgBytes})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := usesFilesFrom(res.Args); got != tt.wantFrom {
				t.Errorf("--files-from used: %v, want %v", got, tt.wantFrom)
			}
			srcTree, dstTree := readTree(t, src), readTree(t, dst)
			if diffs := diffTrees(srcTree, dstTree, tt.list, false); len(diffs) > 0 {
				t.Errorf("destination differs from source:\n%s", strings.Join(diffs[:min(len(diffs), 5)], "\n"))
			}
			for _, p := range tt.absent {
				if _, ok := dstTree[p]; ok {
					t.Errorf("%q copied; it was not listed", p)
				}
			}
		})
	}

	// A source that is missing fails at once with exit 3, not once per entry with exit 23.
	_, err := Run(context.Background(), Job{Binary: rsync, Source: filepath.Join(t.TempDir(), "missing"), Dest: t.TempDir(), List: list("a", "b")})
	var exitErr *ExitError
	if !errors.As(err, &exitErr) || exitErr.Code != 3 || exitErr.Retryable() || exitErr.FailedCount != 0 {
		t.Errorf("missing source: Run = %v, want exit 3, not retryable, no failed paths", err)
	}
}

// pathOfLen is a relative path of n bytes in components of at most 200.
func pathOfLen(n int) string {
	var parts []string
	for n > 200 {
		parts = append(parts, strings.Repeat("c", 199))
		n -= 200
	}
	return strings.Join(append(parts, strings.Repeat("n", n)), "/")
}

func TestEntryArgs(t *testing.T) {
	long := strings.Repeat("n", maxArgPathLen-len("/src/./"))
	tests := []struct {
		name   string
		source string
		list   []byte
		want   []string
		ok     bool
	}{
		{name: "entries", source: "/src", list: list("./a", "./b/c", "./#x", "./-y"), want: []string{"/src/./a", "/src/./b/c", "/src/./#x", "/src/./-y"}, ok: true},
		{name: "root source", source: "/", list: list("./a"), want: []string{"/./a"}, ok: true},
		{name: "no final NUL", source: "/s", list: []byte("./a\x00./b"), want: []string{"/s/./a", "/s/./b"}, ok: true},
		{name: "longest that fits", source: "/src", list: list("./" + long), want: []string{"/src/./" + long}, ok: true},
		{name: "one byte too long", source: "/src", list: list("./a", "./"+long+"x")},
		{name: "too many entries", source: "/s", list: list(make([]string, maxArgEntries+1)...)},
		{name: "empty", source: "/s", list: nil, want: []string{}, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := entryArgs(tt.source, tt.list)
			if ok != tt.ok || ok && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("entryArgs = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestArgBudget(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_STACK, &rl); err != nil {
		t.Fatal(err)
	}
	def := DefaultMaxArgBytes
	if rl.Cur != unix.RLIM_INFINITY && rl.Cur/8 < uint64(def) {
		def = int(rl.Cur / 8)
	}
	for _, tt := range []struct{ in, want int }{{0, def}, {-1, 0}, {12345, 12345}} {
		if got := argBudget(tt.in); got != tt.want {
			t.Errorf("argBudget(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if n := commandBytes([]string{"ab", ""}, []string{"X=1"}); n != 3+1+4+3*pointerBytes {
		t.Errorf("commandBytes = %d", n)
	}
}
