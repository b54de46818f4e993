package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/krsync/krsync/internal/testing/treecmp"
)

// The mirror benchmark measures the last pass of a migration: the destination is a complete
// copy of the 100,000-file tree on which 1% of the files went stale (other content and
// mtime: to be copied again) and which holds 1% files more (as if deleted from the source
// since the first copy: to be deleted). The source tree is the sync benchmark's cached one
// and is never written; the copy is mutated instead, which is the same work for both tools.
// Round by round it mutates the copy, times the two checks of it (read only, alternated):
// rsync's `rsync -aHn --delete --itemize-changes` and `krsync verify`, then one of the two
// mirrors (alternated): `rsync -aH --delete` and `krsync local --mirror --workers 2`, each of
// which must leave the copy equal to the source for the next round. It prints medians and
// the ratios against rsync (issue 10's target: krsync ≤ 1.0 on both). One untimed round
// warms the page cache.
//
//	go test -run '^$' -bench Mirror -benchtime 1x ./bench/
//	KRSYNC_BENCH_SHAPES=10k KRSYNC_BENCH_ROUNDS=5 go test -run '^$' -bench Mirror -benchtime 1x ./bench/
//
// The copy is kept in $KRSYNC_BENCH_DIR (default $TMPDIR) as krsync-bench-mirror-<shape>/copy
// (krsync's state directory beside it, empty between runs); copy.complete marks it equal to
// the source, so a run that failed midway has it copied again.

// mirrorChangeEvery and mirrorExtraAt pick 1% of the files to go stale and 1% to get an
// extraneous sibling: the files at these positions modulo 100 of the sorted walk.
const (
	mirrorChangeEvery = 100
	mirrorExtraAt     = 50
)

// mirrorExtraSuffix names the extraneous files; the source holds no such name.
const mirrorExtraSuffix = ".krsync-bench-gone"

func BenchmarkMirror(b *testing.B) {
	shapes := selectedSyncShapes(b)
	rounds := benchIntList(b, "KRSYNC_BENCH_ROUNDS", "3")[0]
	rsync := lookBinary(b, "rsync")
	krsync := buildKrsync(b)
	base := benchDir()
	for _, shape := range shapes {
		b.Run(shape.name, func(b *testing.B) {
			src := syncBenchTree(b, base, shape)
			dir := filepath.Join(base, "krsync-bench-mirror-"+shape.name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			dest := verifyBenchCopy(b, rsync, src, filepath.Join(dir, "copy"))
			checks := []mirrorCheck{
				{syncTool{name: "rsync -aHn --delete --itemize-changes", argv: func(src, dest string) []string {
					return []string{rsync, "-aHn", "--delete", "--itemize-changes", src + "/", dest + "/"}
				}}, 0},
				{syncTool{name: "krsync verify", argv: func(src, dest string) []string {
					return []string{krsync, "--log-format=json", "verify", "--source", src, "--dest", dest}
				}}, 1},
			}
			mirrors := []syncTool{
				{name: "rsync -aH --delete", argv: func(src, dest string) []string {
					return []string{rsync, "-aH", "--numeric-ids", "--delete", src + "/", dest + "/"}
				}},
				{name: "krsync local --mirror -w 2", argv: func(src, dest string) []string {
					return []string{krsync, "--log-format=json", "local", "--mirror", "--source", src, "--dest", dest,
						"--workers", "2", "--progress=never"}
				}},
			}
			for b.Loop() {
				runMirrorRounds(b, shape.name, src, dest, checks, mirrors, rounds)
			}
		})
	}
}

// mirrorCheck is a way of checking the mutated copy, and its exit code when the trees differ.
type mirrorCheck struct {
	syncTool
	exitDiffer int
}

// runMirrorRounds times checks and mirrors on a copy mutated afresh before each mirror.
func runMirrorRounds(b *testing.B, shape, src, dest string, checks []mirrorCheck, mirrors []syncTool, rounds int) {
	b.Helper()
	m := planMirrorMutation(b, src)
	checkTimes := make([][]time.Duration, len(checks))
	mirrorTimes := make([][]time.Duration, len(mirrors))
	for round := -1; round < rounds; round++ { // round -1 warms the cache
		for i, mirror := range mirrors {
			if round == -1 && i > 0 {
				break
			}
			m.apply(b, dest)
			for j, check := range checks {
				took, out := timeVerifyTool(b, check.argv(src, dest), check.exitDiffer)
				if round >= 0 {
					checkTimes[j] = append(checkTimes[j], took)
				}
				if round == 0 && i == 0 {
					m.checkFound(b, check.name, out)
				}
			}
			took, _ := runSyncTool(b, mirror, src, dest)
			if round >= 0 {
				mirrorTimes[i] = append(mirrorTimes[i], took)
			}
			m.checkUndone(b, mirror.name, src, dest, round == 0)
		}
	}

	var buf bytes.Buffer
	fmt.Fprintf(&buf, "\nshape %s, a copy with %d stale and %d extraneous files: median of %d alternated rounds\n",
		shape, len(m.stale), len(m.extra), rounds)
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "tool\tmedian\t×rsync\tall\t")
	checkTools := make([]syncTool, len(checks))
	for i, c := range checks {
		checkTools[i] = c.syncTool
	}
	for _, group := range []struct {
		tools  []syncTool
		times  [][]time.Duration
		metric string
	}{{checkTools, checkTimes, "verify/rsync-n"}, {mirrors, mirrorTimes, "mirror/rsync-delete"}} {
		baseTime := median(group.times[0])
		for i, tool := range group.tools {
			t := median(group.times[i])
			fmt.Fprintf(w, "%s\t%.2fs\t%.2f\t%s\t\n", tool.name, t.Seconds(), t.Seconds()/baseTime.Seconds(), secondsList(group.times[i]))
		}
		b.ReportMetric(median(group.times[1]).Seconds()/baseTime.Seconds(), group.metric)
	}
	w.Flush()
	fmt.Fprint(os.Stdout, buf.String())
}

// mirrorMutation is what each round does to the copy: the stale files (relative paths, the
// same in the source) and the extraneous files it adds.
type mirrorMutation struct {
	stale, extra []string
}

// planMirrorMutation picks the files of src to make stale and to give an extraneous sibling.
func planMirrorMutation(b *testing.B, src string) *mirrorMutation {
	b.Helper()
	m := &mirrorMutation{}
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		switch n % mirrorChangeEvery {
		case 0:
			m.stale = append(m.stale, rel)
		case mirrorExtraAt:
			m.extra = append(m.extra, rel+mirrorExtraSuffix)
		}
		n++
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// apply mutates the copy: every stale file gets its bytes inverted and a new mtime, and
// every extraneous file is created. The copy is no longer complete until a mirror ran.
func (m *mirrorMutation) apply(b *testing.B, dest string) {
	b.Helper()
	if err := os.Remove(dest + ".complete"); err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
	for _, rel := range m.stale {
		p := filepath.Join(dest, rel)
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		for i := range data {
			data[i] ^= 0xff
		}
		if err := os.WriteFile(p, data, 0); err != nil { // keeps the mode; the mtime is now
			b.Fatal(err)
		}
	}
	for _, rel := range m.extra {
		if err := os.WriteFile(filepath.Join(dest, rel), []byte("deleted from the source\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// checkFound makes sure a check saw the mutation: rsync itemizes every stale file and
// every extraneous one; krsync verify counts at least as many differences.
func (m *mirrorMutation) checkFound(b *testing.B, name, out string) {
	b.Helper()
	want := len(m.stale) + len(m.extra)
	got := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var rec struct {
			Message     string `json:"message"`
			Differences *int   `json:"differences"`
		}
		switch {
		case !strings.HasPrefix(name, "krsync"):
			if strings.HasPrefix(sc.Text(), ">f") || strings.HasPrefix(sc.Text(), "*deleting") {
				got++
			}
		case json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Message == "verify: done" && rec.Differences != nil:
			got = *rec.Differences
		}
	}
	if got < want {
		b.Errorf("%s found %d differences, want at least %d (%d stale, %d extraneous files):\n%s",
			name, got, want, len(m.stale), len(m.extra), lastLines(out, 10))
	}
}

// checkUndone makes sure a mirror made the copy equal to the source again (the contents of
// the stale files compared too when full), and marks the copy complete.
func (m *mirrorMutation) checkUndone(b *testing.B, name, src, dest string, full bool) {
	b.Helper()
	for _, rel := range m.extra {
		if _, err := os.Lstat(filepath.Join(dest, rel)); !os.IsNotExist(err) {
			b.Fatalf("%s left the extraneous %s (%v)", name, rel, err)
		}
	}
	if full {
		diffs, err := treecmp.Compare(src, dest, treecmp.Options{SkipContent: true, Workers: 2})
		if err != nil {
			b.Fatal(err)
		}
		if len(diffs) > 0 {
			b.Fatalf("%s: the copy differs from the source:\n%s", name, treecmp.Format(diffs, 20))
		}
		for _, rel := range m.stale {
			a, err1 := os.ReadFile(filepath.Join(src, rel))
			c, err2 := os.ReadFile(filepath.Join(dest, rel))
			if err1 != nil || err2 != nil || !bytes.Equal(a, c) {
				b.Fatalf("%s: %s was not copied again (%v, %v)", name, rel, err1, err2)
			}
		}
	}
	if err := os.WriteFile(dest+".complete", nil, 0o644); err != nil {
		b.Fatal(err)
	}
}
