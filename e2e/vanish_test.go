package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/krsync/krsync/bench/slowfs"
	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// TestLocalEntriesVanishDuringTheWalk copies a source mounted through slowfs whose
// "vanish-*" names are listed by readdir but gone when the walk looks them up: the race of a
// live volume between readdir and lstat, made to happen every time, at the top level, deep
// down, for files and for a whole directory. The run ends with exit 0 (vanished entries are
// counted, not failures), the summary counts them, and the destination equals the source
// without them. Before issue 9 this ended in exit 1 ("could not be read during the walk").
func TestLocalEntriesVanishDuringTheWalk(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		testbin.SkipOrFail(t, "fusermount3 not found (apt-get install fuse3): "+err.Error())
	}
	w := newLocalWorld(t)
	backing := filepath.Join(w.world, "backing")
	if _, err := treegen.Generate(backing, treegen.Spec{Seed: 4711, Files: 200, FanOut: 3, Depth: 2}); err != nil {
		t.Fatal(err)
	}
	vanishing := []string{"vanish-top", "d00/vanish-mid", "d01/d02/vanish-deep", "vanish-dir/inner", "vanish-dir/sub/more"}
	for _, p := range vanishing {
		writeFile(t, filepath.Join(backing, p), "gone by the time it is looked up", 0o644)
	}
	setTreeTimes(t, backing)
	isVanishing := func(name string) bool { return strings.HasPrefix(name, "vanish-") }
	if err := os.Mkdir(w.src, 0o755); err != nil {
		t.Fatal(err)
	}
	fs, err := slowfs.Mount(backing, w.src, slowfs.Config{Vanish: isVanishing})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fs.Unmount(); err != nil {
			t.Error(err)
		}
	})

	run := syncLocal(t, w, runOptions{}, "--source", w.src, "--dest", w.dest, "--workers", "2", "--fpart-opts=-f 20 -zz")
	summary := summaryOf(t, run)
	// vanish-top, d00/vanish-mid, d01/d02/vanish-deep and the directory vanish-dir: the
	// walk never sees what is below a directory it cannot look up.
	if got := summaryInt(t, summary, "vanished"); got != 4 {
		t.Errorf("summary says %d vanished; want 4", got)
	}
	if n := summaryInt(t, summary, "walk_errors"); n != 0 {
		t.Errorf("%d walk errors: vanished entries counted as errors", n)
	}
	diffs, err := treecmp.Compare(backing, w.dest, treecmp.Options{SymlinkTimes: true, Exclude: func(rel string) bool {
		return isVanishing(filepath.Base(rel)) || strings.HasPrefix(rel, "vanish-dir/")
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) > 0 {
		t.Errorf("the destination differs from the source without the vanished entries:\n%s", treecmp.Format(diffs, 30))
	}
}
