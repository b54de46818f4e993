package fpart

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadDirStatsEveryEntry: whatever the size of a directory (one goroutine below
// 2*parallelStatMin entries to lstat, several above), every entry comes back with what its
// own lstat says: type, size, inode and link count; directories without a stat unless asked;
// names of odd bytes intact.
func TestReadDirStatsEveryEntry(t *testing.T) {
	for _, files := range []int{0, 1, 2*parallelStatMin - 1, 2 * parallelStatMin, 1000} {
		t.Run(fmt.Sprint(files), func(t *testing.T) {
			dir := t.TempDir()
			want := map[string]bool{}
			add := func(name string) { want[name] = true }
			for i := range files {
				name := fmt.Sprintf("f%04d", i)
				if i%7 == 3 {
					name = fmt.Sprintf("#odd \n\xff%04d", i)
				}
				if err := os.WriteFile(filepath.Join(dir, name), make([]byte, i), 0o644); err != nil {
					t.Fatal(err)
				}
				add(name)
			}
			for _, name := range []string{"sub", "other dir"} {
				if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
					t.Fatal(err)
				}
				add(name)
			}
			if err := os.Symlink("nowhere", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			add("link")
			if files > 0 {
				if err := os.Link(filepath.Join(dir, "f0000"), filepath.Join(dir, "hard")); err != nil {
					t.Fatal(err)
				}
				add("hard")
			}
			for _, needDirStat := range []bool{false, true} {
				l := readDir(dir, false, needDirStat, newDirentBuffers(), nil)
				if l.err != nil || len(l.entries) != len(want) {
					t.Fatalf("readDir: %d entries (%v), want %d", len(l.entries), l.err, len(want))
				}
				for _, e := range l.entries {
					if !want[e.name] {
						t.Fatalf("unexpected name %q", e.name)
					}
					var st unix.Stat_t
					if err := unix.Lstat(filepath.Join(dir, e.name), &st); err != nil {
						t.Fatal(err)
					}
					if e.err != nil || e.mode != st.Mode&unix.S_IFMT || e.ino != st.Ino {
						t.Fatalf("%q: mode %o ino %d err %v; lstat says %o, %d", e.name, e.mode, e.ino, e.err, st.Mode&unix.S_IFMT, st.Ino)
					}
					stated := !e.isDir() || needDirStat
					if stated && (e.nlink != uint64(st.Nlink) || e.dev != uint64(st.Dev)) || !stated && e.nlink != 0 {
						t.Errorf("%q: nlink %d dev %d (stated: %v); lstat says %d, %d", e.name, e.nlink, e.dev, stated, st.Nlink, st.Dev)
					}
					if wantSize := int64(0); e.mode == unix.S_IFREG && e.size != st.Size || e.mode != unix.S_IFREG && e.size != wantSize {
						t.Errorf("%q: size %d, lstat says %d", e.name, e.size, st.Size)
					}
				}
			}
		})
	}
}
