//go:build linux

package rsyncexec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/internal/testing/testbin"
)

// TestDropUnchanged copies a small tree with the real rsync, changes one thing in the
// destination per case, and checks that exactly the changed entry is left for rsync.
func TestDropUnchanged(t *testing.T) {
	rsync := testbin.Rsync(t)
	entries := []string{"a.txt", "d", "d/b.txt", "link", "hard1", "hard2"}
	setup := func(t *testing.T) (src, dst string) {
		t.Helper()
		src, dst = filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dst")
		must(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
		must(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o644))
		must(t, os.WriteFile(filepath.Join(src, "d/b.txt"), []byte("beta"), 0o600))
		must(t, os.Symlink("a.txt", filepath.Join(src, "link")))
		must(t, os.WriteFile(filepath.Join(src, "hard1"), []byte("h"), 0o644))
		must(t, os.Link(filepath.Join(src, "hard1"), filepath.Join(src, "hard2")))
		if out, err := exec.Command(rsync, "-aH", "--numeric-ids", "--modify-window=-1", src+"/", dst+"/").CombinedOutput(); err != nil {
			t.Fatalf("rsync: %v\n%s", err, out)
		}
		return src, dst
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	tests := []struct {
		name   string
		change func(t *testing.T, dst string)
		kept   []string
	}{
		{"nothing changed: only hard links go to rsync", func(*testing.T, string) {}, []string{"hard1", "hard2"}},
		{"file mtime", func(t *testing.T, dst string) { must(t, os.Chtimes(filepath.Join(dst, "a.txt"), old, old)) }, []string{"a.txt", "hard1", "hard2"}},
		{"file mode", func(t *testing.T, dst string) { must(t, os.Chmod(filepath.Join(dst, "d/b.txt"), 0o644)) }, []string{"d/b.txt", "hard1", "hard2"}},
		{"file owner", func(t *testing.T, dst string) { must(t, os.Lchown(filepath.Join(dst, "a.txt"), 4242, 4242)) }, []string{"a.txt", "hard1", "hard2"}},
		{"directory mtime", func(t *testing.T, dst string) { must(t, os.Chtimes(filepath.Join(dst, "d"), old, old)) }, []string{"d", "hard1", "hard2"}},
		{"file missing", func(t *testing.T, dst string) { must(t, os.Remove(filepath.Join(dst, "a.txt"))) }, []string{"a.txt", "hard1", "hard2"}},
		// Its entries are not stat()ed one by one: the parent's failure is remembered.
		{"directory missing", func(t *testing.T, dst string) { must(t, os.RemoveAll(filepath.Join(dst, "d"))) }, []string{"d", "d/b.txt", "hard1", "hard2"}},
		{"symlink target, same mtime", func(t *testing.T, dst string) {
			p := filepath.Join(dst, "link")
			var st syscallStat
			lstatInto(t, p, &st)
			must(t, os.Remove(p))
			must(t, os.Symlink("d/b.txt", p))
			restoreLinkTime(t, p, st)
		}, []string{"link", "hard1", "hard2"}},
		{"a directory replaced by a symlink in the destination", func(t *testing.T, dst string) {
			outside := t.TempDir()
			must(t, os.Rename(filepath.Join(dst, "d"), filepath.Join(outside, "d")))
			must(t, os.Symlink(filepath.Join(outside, "d"), filepath.Join(dst, "d")))
		}, []string{"d", "d/b.txt", "hard1", "hard2"}},
		{"file size, same mtime", func(t *testing.T, dst string) {
			p := filepath.Join(dst, "a.txt")
			var st syscallStat
			lstatInto(t, p, &st)
			must(t, os.WriteFile(p, []byte("alpha and more"), 0o644))
			must(t, os.Chtimes(p, time.Unix(st.Mtim.Unix()), time.Unix(st.Mtim.Unix())))
		}, []string{"a.txt", "hard1", "hard2"}},
		{"file hard-linked in the destination only", func(t *testing.T, dst string) {
			must(t, os.Link(filepath.Join(dst, "d/b.txt"), filepath.Join(dst, "extra")))
		}, []string{"d/b.txt", "hard1", "hard2"}},
		{"file replaced by a symlink to an equal file outside", func(t *testing.T, dst string) {
			outside := filepath.Join(t.TempDir(), "a.txt")
			p := filepath.Join(dst, "a.txt")
			must(t, os.Rename(p, outside))
			must(t, os.Symlink(outside, p))
		}, []string{"a.txt", "hard1", "hard2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if os.Geteuid() != 0 && tt.name == "file owner" {
				t.Skip("chown to another owner needs root")
			}
			src, dst := setup(t)
			tt.change(t, dst)
			kept, _, dropped := dropUnchanged(src, dst, list(entries...), false)
			got := splitList(kept)
			if !equalStrings(got, tt.kept) || int(dropped) != len(entries)-len(tt.kept) {
				t.Fatalf("kept %q (dropped %d); want %q", got, dropped, tt.kept)
			}
			// The walk's DestCompare makes the same decision for the files and symlinks.
			dc, err := OpenDestCompare(dst)
			must(t, err)
			defer dc.Close()
			for _, e := range []string{"a.txt", "d/b.txt", "link"} {
				dir, name := path.Split(e)
				dir = strings.TrimSuffix(dir, "/")
				if dir == "" {
					dir = "."
				}
				srcDir, err := unix.Open(filepath.Join(src, dir), unix.O_PATH|unix.O_DIRECTORY, 0)
				must(t, err)
				var st unix.Stat_t
				must(t, unix.Fstatat(srcDir, name, &st, unix.AT_SYMLINK_NOFOLLOW))
				same := false
				if d := dc.Dir(dir); d != nil {
					same = d.Unchanged(srcDir, name, &st)
					d.Close()
				}
				unix.Close(srcDir)
				if same == slices.Contains(tt.kept, e) {
					t.Errorf("DestCompare says %s unchanged: %v; dropUnchanged keeps %q", e, same, tt.kept)
				}
			}
		})
	}
}

// TestRunSkipsUnchanged: an unchanged list does not start rsync at all; a changed one is
// copied, and options that change the meaning of "unchanged" turn the pre-check off.
func TestRunSkipsUnchanged(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dst := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dst")
	must(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "d/f"), []byte("x"), 0o644))
	ctx := context.Background()
	job := Job{Binary: rsync, Source: src, Dest: dst, List: list("d", "d/f")}
	if _, err := Run(ctx, job); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, job)
	if err != nil || res.Args != nil || res.Unchanged != 2 {
		t.Fatalf("second run: %+v, %v; want rsync not started and 2 unchanged", res, err)
	}
	dirs := Job{Binary: rsync, Source: src, Dest: dst, List: list(".", "d"), Dirs: true}
	if _, err := Run(ctx, dirs); err != nil { // sets the root's metadata, which no file pass does
		t.Fatal(err)
	}
	if res, err := Run(ctx, dirs); err != nil || res.Unchanged != 2 || res.Args != nil {
		t.Fatalf("directory pass over unchanged dirs: %+v, %v; want rsync not started", res, err)
	}
	must(t, os.WriteFile(filepath.Join(src, "d/f"), []byte("changed"), 0o644))
	res, err = Run(ctx, job)
	if err != nil || res.FilesTransferred != 1 || res.Unchanged != 1 {
		t.Fatalf("after a change: %+v, %v; want 1 file transferred, 1 unchanged (the directory)", res, err)
	}
	job.Args = []string{"--archive", "--checksum"}
	if res, err := Run(ctx, job); err != nil || res.Unchanged != 0 || res.Args == nil {
		t.Fatalf("with --checksum: %+v, %v; want every entry handed to rsync", res, err)
	}
}

func TestQuickCheckSafe(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{DefaultArgs, true},
		{[]string{"-aH", "--numeric-ids"}, true},
		{[]string{"-aHS", "-v"}, true},
		{[]string{"-a", "-c"}, false},
		{[]string{"-aX"}, false},
		{[]string{"--archive", "--acls"}, false},
		{[]string{"-a", "--chmod=u+w"}, false},
		{[]string{"-a", "--size-only"}, false},
	}
	for _, tt := range tests {
		if got := QuickCheckSafe(tt.args); got != tt.want {
			t.Errorf("QuickCheckSafe(%q) = %v; want %v", tt.args, got, tt.want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func splitList(l []byte) []string {
	var out []string
	start := 0
	for i, c := range l {
		if c == 0 {
			out = append(out, string(l[start:i]))
			start = i + 1
		}
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type syscallStat = unix.Stat_t

func lstatInto(t *testing.T, p string, st *unix.Stat_t) {
	t.Helper()
	must(t, unix.Lstat(p, st))
}

// restoreLinkTime gives the symlink p the mtime st had, so only its target differs.
func restoreLinkTime(t *testing.T, p string, st unix.Stat_t) {
	t.Helper()
	ts := []unix.Timespec{st.Atim, st.Mtim}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
}

// TestDropUnchangedStopsLookingOnAFirstCopy: after firstCopyRun entries in a row missing from
// the destination, the rest of the list goes to rsync unchecked (a first copy); fewer misses
// in a row, and the unchanged entries after them are still left out.
func TestDropUnchangedStopsLookingOnAFirstCopy(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	const n = 3 * firstCopyRun
	var names []string
	stamp := time.Date(2010, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := range n {
		name := fmt.Sprintf("f%03d", i)
		names = append(names, name)
		for _, root := range []string{src, dst} {
			p := filepath.Join(root, name)
			must(t, os.WriteFile(p, []byte(name), 0o644))
			must(t, os.Chtimes(p, stamp, stamp))
		}
	}
	tests := []struct {
		name        string
		missing     int // the first entries removed from the destination
		wantDropped int64
	}{
		{"all present: all unchanged", 0, n},
		{"one short of a first copy", firstCopyRun - 1, n - (firstCopyRun - 1)},
		{"a first copy", firstCopyRun, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "dst")
			must(t, os.CopyFS(d, os.DirFS(dst)))
			for i := range n {
				p := filepath.Join(d, names[i])
				if i < tt.missing {
					must(t, os.Remove(p))
					continue
				}
				must(t, os.Chtimes(p, stamp, stamp))
			}
			var list []byte
			for _, name := range names {
				list = append(list, "./"+name+"\x00"...)
			}
			kept, _, dropped := dropUnchanged(src, d, list, false)
			if dropped != tt.wantDropped || int64(bytes.Count(kept, []byte{0})) != n-tt.wantDropped {
				t.Errorf("dropped %d, kept %d entries; want %d dropped", dropped, bytes.Count(kept, []byte{0}), tt.wantDropped)
			}
		})
	}
}

// TestDropUnchangedManyEntries: a list long enough to be compared by several goroutines over
// growing windows keeps exactly the entries that differ or are missing, in the list's order,
// whatever their position: first, last, on either side of a chunk's or a window's edge, in
// one directory or another.
func TestDropUnchangedManyEntries(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	stamp := time.Date(2010, 1, 2, 3, 4, 5, 6, time.UTC)
	var names []string
	for d := range 20 {
		dir := fmt.Sprintf("d%02d", d)
		names = append(names, dir)
		for _, root := range []string{src, dst} {
			must(t, os.Mkdir(filepath.Join(root, dir), 0o755))
		}
		for f := range 60 {
			name := fmt.Sprintf("%s/#f %02d", dir, f)
			names = append(names, name)
			for _, root := range []string{src, dst} {
				p := filepath.Join(root, name)
				must(t, os.WriteFile(p, []byte(name), 0o644))
				must(t, os.Chtimes(p, stamp, stamp))
			}
		}
	}
	for _, name := range names { // directories last: their files changed their mtimes
		if !bytes.Contains([]byte(name), []byte("/")) {
			for _, root := range []string{src, dst} {
				must(t, os.Chtimes(filepath.Join(root, name), stamp, stamp))
			}
		}
	}
	changed := map[int]bool{}
	for _, i := range []int{1, 31, 32, 33, 63, 64, 65, 191, 192, 447, 448, 959, 960, len(names) - 1} {
		p := filepath.Join(dst, names[i])
		if i%2 == 0 {
			must(t, os.Remove(p)) // missing
		} else {
			later := stamp.Add(time.Second)
			must(t, os.Chtimes(p, later, later)) // changed
		}
		changed[i] = true
	}
	for _, name := range names { // a removal changed its directory's mtime: put it back
		if !bytes.Contains([]byte(name), []byte("/")) {
			must(t, os.Chtimes(filepath.Join(dst, name), stamp, stamp))
		}
	}
	var list []byte
	for _, name := range names {
		list = append(list, "./"+name+"\x00"...)
	}
	kept, _, dropped := dropUnchanged(src, dst, list, false)
	var want []byte
	for i, name := range names {
		if changed[i] {
			want = append(want, "./"+name+"\x00"...)
		}
	}
	if !bytes.Equal(kept, want) || dropped != int64(len(names)-len(changed)) {
		t.Errorf("kept %q (dropped %d); want %q (dropped %d)", kept, dropped, want, len(names)-len(changed))
	}
}

// TestRunBreaksForeignLinks: a destination whose files share inodes the source does not
// share (equal contents and times, so rsync's quick check alone would keep them linked) ends
// with the source's link structure: singletons apart, a source group linked together and
// apart from the foreign name, whose data stays; a name linked to a file outside the
// destination gets the source's mode without that file changing.
func TestRunBreaksForeignLinks(t *testing.T) {
	rsync := testbin.Rsync(t)
	when := time.Unix(1.6e9, 0)
	write := func(root string, names ...string) {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(root, n), []byte("same bytes\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(filepath.Join(root, n), when, when); err != nil {
				t.Fatal(err)
			}
		}
	}
	link := func(root, from string, to ...string) {
		for _, n := range to {
			if err := os.Link(filepath.Join(root, from), filepath.Join(root, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ino := func(root, name string) uint64 {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	src, dst := t.TempDir(), t.TempDir()
	write(src, "#first", "q", "a", "x", "z-last")
	link(src, "a", "b")
	write(dst, "#first", "a")
	link(dst, "#first", "q", "z-last") // three separate source files, one inode here
	link(dst, "a", "b", "x")           // the source's group a,b, and x, one inode here
	if _, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list("#first", "q", "a", "b", "x", "z-last")}); err != nil {
		t.Fatal(err)
	}
	if ino(dst, "#first") == ino(dst, "q") || ino(dst, "q") == ino(dst, "z-last") || ino(dst, "#first") == ino(dst, "z-last") {
		t.Errorf("#first, q, z-last still share an inode in the destination; the source's are apart")
	}
	if ino(dst, "a") != ino(dst, "b") || ino(dst, "x") == ino(dst, "a") {
		t.Errorf("destination a, b, x inodes %d %d %d: want a and b linked, x apart", ino(dst, "a"), ino(dst, "b"), ino(dst, "x"))
	}
	for _, n := range []string{"#first", "q", "a", "b", "x", "z-last"} {
		if data, err := os.ReadFile(filepath.Join(dst, n)); err != nil || string(data) != "same bytes\n" {
			t.Errorf("%s: %q, %v", n, data, err)
		}
	}
	// A planted link to a file outside the destination: the source's mode (setuid) must
	// land on the destination's own inode, never on the outside file.
	outside := filepath.Join(t.TempDir(), "outside")
	write(filepath.Dir(outside), "outside")
	if err := unix.Chmod(filepath.Join(src, "x"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dst, "x")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(dst, "x")); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list("x")}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o644 || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("the file outside the destination after the copy: %v, %v; want it untouched (0644)", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "x")); err != nil || fi.Mode()&os.ModeSetuid == 0 || ino(dst, "x") == ino(filepath.Dir(outside), "outside") {
		t.Errorf("destination x after the copy: %v, %v; want the source's setuid mode on an inode of its own", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dst, ".krsync-link.*")); len(left) > 0 {
		t.Errorf("temporary copies left: %q", left)
	}
}
