package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// The sync benchmark copies the same generated trees with a single `rsync -aH`, with
// `fpsync -n N` and with `krsync local --workers N`, alternating the programs round by round
// (rsync, fpsync, krsync, rsync, ...) into fresh destinations, then re-syncs each unchanged
// copy, and prints median wall times and their ratios against single rsync. Nothing is
// dropped from the page cache: one untimed copy warms it, and every timed run starts after
// sync(2), so all programs see the same conditions.
//
//	make bench                                    # the 100,000-file shape
//	KRSYNC_BENCH_SHAPES=all make bench            # plus 20 × 100 MiB, mixed, 1,000,000 tiny files
//	KRSYNC_BENCH_SHAPES=tiny1m KRSYNC_BENCH_WORKERS=2,4 KRSYNC_BENCH_ROUNDS=5 \
//	    go test -run '^$' -bench Sync -benchtime 1x -timeout 90m ./bench/
//
// Trees are generated once (seeded) and kept in $KRSYNC_BENCH_DIR (default $TMPDIR) as
// krsync-bench-sync-<shape>; delete them to rebuild.

// syncShape is one tree of the benchmark.
type syncShape struct {
	name string
	spec treegen.Spec
}

func syncShapes() []syncShape {
	return []syncShape{
		{"100k", treegen.Plain100k(42)},
		{"big20", treegen.Big20(42)},
		{"mixed", treegen.Mixed(42)},
		{"tiny1m", treegen.Tiny1M(42)},
		{"10k", treegen.Spec{Seed: 42, Files: 10_000}}, // a quick smoke run of the benchmark itself
	}
}

// syncTool is one way of copying a tree: argv for a copy from src into dest.
type syncTool struct {
	name string
	argv func(src, dest string) []string
	// verify: the copy must equal the source (fpsync does not keep directory mtimes).
	verify bool
}

func BenchmarkSync(b *testing.B) {
	shapes := selectedSyncShapes(b)
	workers := benchIntList(b, "KRSYNC_BENCH_WORKERS", "2")
	rounds := benchIntList(b, "KRSYNC_BENCH_ROUNDS", "3")[0]
	rsync := lookBinary(b, "rsync")
	fpsync := lookBinary(b, "fpsync")
	lookBinary(b, "fpart") // fpsync runs it
	krsync := buildKrsync(b)
	base := benchDir()
	scratch := benchScratch(b, base, "sync")

	tools := []syncTool{{name: "rsync -aH", verify: true, argv: func(src, dest string) []string {
		return []string{rsync, "-aH", "--numeric-ids", src + "/", dest + "/"}
	}}}
	for _, n := range workers {
		tools = append(tools, syncTool{name: fmt.Sprintf("fpsync -n %d", n), argv: func(src, dest string) []string {
			tmp := filepath.Join(scratch, "fpsync-tmp")
			return []string{fpsync, "-n", strconv.Itoa(n), "-t", tmp, src + "/", dest + "/"}
		}})
		tools = append(tools, syncTool{name: fmt.Sprintf("krsync -w %d", n), verify: true, argv: func(src, dest string) []string {
			return []string{krsync, "--log-format=json", "local", "--source", src, "--dest", dest,
				"--workers", strconv.Itoa(n), "--progress=never"}
		}})
	}
	for _, shape := range shapes {
		b.Run(shape.name, func(b *testing.B) {
			src := syncBenchTree(b, base, shape)
			for b.Loop() {
				runSyncRounds(b, shape.name, src, scratch, tools, rounds)
			}
		})
	}
}

// selectedSyncShapes reads KRSYNC_BENCH_SHAPES: "all", or a comma list of shape names;
// the default is the 100,000-file shape, so `make bench` takes minutes.
func selectedSyncShapes(b *testing.B) []syncShape {
	b.Helper()
	want := os.Getenv("KRSYNC_BENCH_SHAPES")
	if want == "" {
		want = "100k"
	}
	var shapes, all []syncShape
	var names []string
	for _, s := range syncShapes() {
		all = append(all, s)
		names = append(names, s.name)
	}
	if want == "all" {
		return all
	}
	for _, name := range strings.Split(want, ",") {
		i := slices.Index(names, strings.TrimSpace(name))
		if i < 0 {
			b.Fatalf("KRSYNC_BENCH_SHAPES=%q: unknown shape %q (have %s, or all)", want, name, strings.Join(names, ", "))
		}
		shapes = append(shapes, all[i])
	}
	return shapes
}

func benchIntList(b *testing.B, env, def string) []int {
	b.Helper()
	v := os.Getenv(env)
	if v == "" {
		v = def
	}
	var ns []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want positive integers separated by commas", env, v)
		}
		ns = append(ns, n)
	}
	return ns
}

// syncBenchTree returns the cached tree of a shape, generating it when missing or partial.
func syncBenchTree(b *testing.B, base string, shape syncShape) string {
	b.Helper()
	tree := filepath.Join(base, "krsync-bench-sync-"+shape.name)
	done := tree + ".complete"
	if _, err := os.Stat(done); err == nil {
		return tree
	}
	if err := os.RemoveAll(tree); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	sum, err := treegen.Generate(tree, shape.spec)
	if err != nil {
		b.Fatalf("generate %s: %v", shape.name, err)
	}
	b.Logf("generated %s in %v: %d files, %d dirs, %d MB (kept in %s)", shape.name,
		time.Since(start).Round(time.Millisecond), sum.Files, sum.Dirs, sum.Bytes/1e6, tree)
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return tree
}

// syncTimes are the measured wall times of one tool.
type syncTimes struct {
	copy, resync []time.Duration
}

// runSyncRounds warms the page cache, runs every tool once per round in turn (fresh
// destination, then an unchanged re-sync), and prints the medians and ratios.
func runSyncRounds(b *testing.B, shape, src, scratch string, tools []syncTool, rounds int) {
	b.Helper()
	warm := filepath.Join(scratch, "warm-up")
	runSyncTool(b, tools[0], src, warm)
	removeDest(b, warm)

	times := make([]syncTimes, len(tools))
	for round := range rounds {
		for i, tool := range tools {
			dest := filepath.Join(scratch, fmt.Sprintf("dest-%d-%d", round, i))
			copyTime, _ := runSyncTool(b, tool, src, dest)
			resyncTime, out := runSyncTool(b, tool, src, dest)
			times[i].copy = append(times[i].copy, copyTime)
			times[i].resync = append(times[i].resync, resyncTime)
			if round == 0 {
				checkSyncCopy(b, tool, src, dest, out)
			}
			removeDest(b, dest)
		}
	}
	printSyncTable(b, shape, tools, times, rounds)
}

// runSyncTool copies src into dest (created empty when missing) with one tool, after
// sync(2) so that no earlier run's writeback lands in this run's time.
func runSyncTool(b *testing.B, tool syncTool, src, dest string) (time.Duration, string) {
	b.Helper()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		b.Fatal(err)
	}
	argv := tool.argv(src, dest)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(filepath.Dir(dest), "state"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	unix.Sync()
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", tool.name, err, lastLines(out.String(), 20))
	}
	if tmp := filepath.Join(filepath.Dir(dest), "fpsync-tmp"); strings.HasPrefix(tool.name, "fpsync") {
		os.RemoveAll(tmp) // its per-run logs and partition lists
	}
	return took, out.String()
}

// compareCopy compares a copy with its source (metadata and sizes): a difference fails the
// benchmark when mustEqual, and is only logged for tools that do not keep everything.
func compareCopy(b *testing.B, name string, mustEqual bool, src, dest string) {
	b.Helper()
	diffs, err := treecmp.Compare(src, dest, treecmp.Options{SkipContent: true, Workers: 2})
	if err != nil {
		b.Fatal(err)
	}
	switch {
	case mustEqual && len(diffs) > 0:
		b.Errorf("%s: the copy differs from the source:\n%s", name, treecmp.Format(diffs, 20))
	case len(diffs) > 0:
		b.Logf("%s: %d differences from the source (e.g. %s)", name, len(diffs), diffs[0])
	}
}

// checkSyncCopy makes sure the first copy of each tool is a real copy, and that krsync's
// unchanged re-sync transferred nothing.
func checkSyncCopy(b *testing.B, tool syncTool, src, dest, resyncOutput string) {
	b.Helper()
	compareCopy(b, tool.name, tool.verify, src, dest)
	if !strings.HasPrefix(tool.name, "krsync") {
		return
	}
	sc := bufio.NewScanner(strings.NewReader(resyncOutput))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var rec struct {
			Message          string `json:"message"`
			FilesTransferred *int64 `json:"files_transferred"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Message == "summary" && rec.FilesTransferred != nil {
			if *rec.FilesTransferred != 0 {
				b.Errorf("%s: the unchanged re-sync transferred %d files", tool.name, *rec.FilesTransferred)
			}
			return
		}
	}
	b.Errorf("%s: no summary in the re-sync's log:\n%s", tool.name, lastLines(resyncOutput, 10))
}

func removeDest(b *testing.B, dest string) {
	b.Helper()
	if err := os.RemoveAll(dest); err != nil {
		b.Fatal(err)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printSyncTable(b *testing.B, shape string, tools []syncTool, times []syncTimes, rounds int) {
	b.Helper()
	baseCopy, baseResync := median(times[0].copy), median(times[0].resync)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "\nshape %s: median of %d alternated rounds (fresh destination each), ratios against single rsync\n", shape, rounds)
	w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "tool\tcopy\t×rsync\tre-sync\t×rsync\tall copies\t")
	for i, tool := range tools {
		c, r := median(times[i].copy), median(times[i].resync)
		fmt.Fprintf(w, "%s\t%.2fs\t%.2f\t%.2fs\t%.2f\t%s\t\n", tool.name, c.Seconds(), c.Seconds()/baseCopy.Seconds(),
			r.Seconds(), r.Seconds()/baseResync.Seconds(), secondsList(times[i].copy))
		metric := strings.ReplaceAll(strings.ReplaceAll(tool.name, " ", ""), "-", "")
		if i > 0 {
			b.ReportMetric(c.Seconds()/baseCopy.Seconds(), metric+"/rsync-copy")
			b.ReportMetric(r.Seconds()/baseResync.Seconds(), metric+"/rsync-resync")
		}
	}
	w.Flush()
	fmt.Fprint(os.Stdout, buf.String())
}

func secondsList(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.2f", d.Seconds())
	}
	return strings.Join(parts, " ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// benchDir is where the benchmarks keep their generated trees: $KRSYNC_BENCH_DIR, or $TMPDIR.
func benchDir() string {
	if dir := os.Getenv("KRSYNC_BENCH_DIR"); dir != "" {
		return dir
	}
	return os.TempDir()
}

// benchScratch is an empty scratch directory krsync-bench-NAME-scratch in base, removed when
// the benchmark ends.
func benchScratch(b *testing.B, base, name string) string {
	b.Helper()
	scratch := filepath.Join(base, "krsync-bench-"+name+"-scratch")
	if err := os.RemoveAll(scratch); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(scratch) })
	return scratch
}
