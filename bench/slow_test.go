package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/bench/slowfs"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// The slow-storage benchmark copies a generated tree from one slowfs mount to another
// (every metadata request costs KRSYNC_SLOW_DELAY, 1 ms by default, as on a LAN NFS server:
// a PVC-to-PVC copy), with a single `rsync -aH`, `fpsync -n 8`, msrsync-style `xargs -P 8`
// over fpart's lists, and `krsync local --workers N`, alternating the tools round by round.
// It prints median wall times, speed-ups over single rsync and the metadata requests each
// tool caused on both mounts, and writes the table to bench/RESULTS.md.
//
//	make bench-slow                                  # the 5,000-file tree: krsync 3 rounds, the others 1
//	KRSYNC_BENCH_SHAPES=slow20k make bench-slow      # the acceptance tree of issue 13
//	KRSYNC_BENCH_SHAPES=100k KRSYNC_BENCH_ROUNDS=1 make bench-slow
//
// Knobs: KRSYNC_BENCH_ROUNDS (3), KRSYNC_BENCH_WORKERS (the krsync worker counts, 2,8,16,32),
// KRSYNC_SLOW_BASELINE_ROUNDS (rounds of rsync, fpsync and xargs, the slow baselines: 1, so
// that one run stays near 20 minutes), KRSYNC_SLOW_DELAY (1ms), KRSYNC_SLOW_TTL (how long
// the kernel caches names and attributes, 1s), KRSYNC_SLOW_TOOLS (a comma list of tool names to run, e.g.
// "rsync,krsync-w8"), KRSYNC_SLOW_KRSYNC_ARGS (extra flags for krsync local, split on
// spaces, e.g. "--fpart-opts=-f250"), KRSYNC_BIN (the krsync binary, default ../bin/krsync from make
// build), KRSYNC_BENCH_RESULTS (the report, default RESULTS.md here; "-" for none).
// It runs only when KRSYNC_BENCH_SLOW=1 (set by make bench-slow), so `make bench` stays fast.

// slowShapes are the trees of this benchmark: small files in a few hundred directories.
func slowShapes() []syncShape {
	return []syncShape{
		{"slow5k", treegen.Spec{Seed: 42, Files: 5_000, FanOut: 10, Depth: 2}},   // 110 dirs
		{"slow20k", treegen.Spec{Seed: 42, Files: 20_000, FanOut: 17, Depth: 2}}, // 306 dirs
		{"100k", treegen.Plain100k(42)},                                          // the local-disk shape
		{"slow1k", treegen.Spec{Seed: 42, Files: 1_000, FanOut: 6, Depth: 2}},    // a smoke run of the benchmark
	}
}

// slowTool is one way of copying: argv for a copy from src into dst, with work as its
// scratch space outside the mounts.
type slowTool struct {
	name string
	argv func(src, dst, work string) []string
	// baseline tools may run fewer rounds (KRSYNC_SLOW_BASELINE_ROUNDS): they are the slow ones.
	baseline bool
	// resync also times a second, unchanged run into the complete destination.
	resync bool
	// verify: the copy must equal the source; the others are only reported (fpsync and the
	// xargs lists keep neither directory times nor hard links across partitions).
	verify bool
}

// slowRun is what one run of a tool measured.
type slowRun struct {
	took     time.Duration
	src, dst slowfs.Counts
}

func (r slowRun) ops() uint64 { return r.src.Metadata() + r.dst.Metadata() }

type slowResults struct {
	copy, resync []slowRun
}

func BenchmarkSlowSync(b *testing.B) {
	if os.Getenv("KRSYNC_BENCH_SLOW") != "1" {
		b.Skip("the slow-storage benchmark runs with KRSYNC_BENCH_SLOW=1 (make bench-slow)")
	}
	shapes := selectShapes(b, slowShapes(), "slow5k")
	delay := 1 * time.Millisecond
	if v := os.Getenv("KRSYNC_SLOW_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("KRSYNC_SLOW_DELAY=%q: %v", v, err)
		}
		delay = d
	}
	// A 1 s kernel cache is shorter than an NFS client's (3 to 60 s), long enough that a
	// path's directories are not looked up again for every file.
	ttl := time.Second
	if v := os.Getenv("KRSYNC_SLOW_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("KRSYNC_SLOW_TTL=%q: %v", v, err)
		}
		ttl = d
	}
	cfg := slowfs.Config{Delay: delay, EntryTTL: ttl, AttrTTL: ttl}
	rounds := benchIntList(b, "KRSYNC_BENCH_ROUNDS", "3")[0]
	baselineRounds := benchIntList(b, "KRSYNC_SLOW_BASELINE_ROUNDS", "1")[0]
	tools := slowTools(b, benchIntList(b, "KRSYNC_BENCH_WORKERS", "2,8,16,32"))
	base := benchDir()
	scratch := benchScratch(b, base, "slow")
	var report bytes.Buffer
	for _, shape := range shapes {
		b.Run(shape.name, func(b *testing.B) {
			src := syncBenchTree(b, base, shape)
			for b.Loop() {
				res := runSlowRounds(b, src, scratch, tools, cfg, rounds, baselineRounds)
				writeSlowTable(&report, shape, cfg, tools, res, rounds, baselineRounds)
			}
		})
	}
	fmt.Print(report.String())
	writeSlowResults(b, report.String(), krsyncBinary(b), tools, cfg)
}

// selectShapes reads KRSYNC_BENCH_SHAPES (a comma list of names, or "all"), default def.
func selectShapes(b *testing.B, all []syncShape, def string) []syncShape {
	b.Helper()
	want := os.Getenv("KRSYNC_BENCH_SHAPES")
	if want == "" {
		want = def
	}
	if want == "all" {
		return all
	}
	var shapes []syncShape
	var names []string
	for _, s := range all {
		names = append(names, s.name)
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

func slowTools(b *testing.B, workers []int) []slowTool {
	b.Helper()
	rsync := lookBinary(b, "rsync")
	fpsync := lookBinary(b, "fpsync")
	fpart := lookBinary(b, "fpart")
	krsync := krsyncBinary(b)
	tools := []slowTool{
		{name: "rsync", baseline: true, resync: true, verify: true, argv: func(src, dst, _ string) []string {
			return []string{rsync, "-aH", "--numeric-ids", src + "/", dst + "/"}
		}},
		// fpsync's own defaults (rsync -lptgoD --numeric-ids per partition of files), with
		// partitions of 250 files so that its 8 jobs all get work on a tree this small.
		{name: "fpsync-n8", baseline: true, argv: func(src, dst, work string) []string {
			return []string{fpsync, "-n", "8", "-f", "250", "-t", filepath.Join(work, "fpsync"), src + "/", dst + "/"}
		}},
		// msrsync-style: fpart lists first, then 8 rsyncs at a time over them (no final
		// pass for directory times: the same shortcut as fpsync's).
		{name: "xargs-P8", baseline: true, argv: func(src, dst, work string) []string {
			lists := filepath.Join(work, "lists")
			return []string{"sh", "-c", `mkdir -p "$3" && cd "$1" && "$4" -f 250 -o "$3/part" . >/dev/null && ` +
				`ls "$3"/part.* | xargs -P 8 -I{} "$5" -aH --numeric-ids --files-from={} "$1/" "$2/"`,
				"sh", src, dst, lists, fpart, rsync}
		}},
	}
	// Extra flags for krsync local, to try a knob before it becomes a default.
	krsyncExtra := strings.Fields(os.Getenv("KRSYNC_SLOW_KRSYNC_ARGS"))
	for _, n := range workers {
		tools = append(tools, slowTool{name: fmt.Sprintf("krsync-w%d", n), resync: n == 8, verify: true,
			argv: func(src, dst, _ string) []string {
				return append([]string{krsync, "--log-format=json", "local", "--source", src, "--dest", dst,
					"--workers", strconv.Itoa(n), "--progress=never"}, krsyncExtra...)
			}})
	}
	if want := os.Getenv("KRSYNC_SLOW_TOOLS"); want != "" {
		var picked []slowTool
		for _, name := range strings.Split(want, ",") {
			i := slices.IndexFunc(tools, func(t slowTool) bool { return t.name == strings.TrimSpace(name) })
			if i < 0 {
				b.Fatalf("KRSYNC_SLOW_TOOLS=%q: unknown tool %q", want, name)
			}
			picked = append(picked, tools[i])
		}
		tools = picked
	}
	return tools
}

// krsyncBinary is KRSYNC_BIN, or the binary make build writes.
func krsyncBinary(b *testing.B) string {
	b.Helper()
	krsync := os.Getenv("KRSYNC_BIN")
	if krsync == "" {
		krsync = "../bin/krsync"
	}
	krsync, err := filepath.Abs(krsync)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(krsync); err != nil {
		b.Fatalf("krsync binary: %v (run make build, or set KRSYNC_BIN)", err)
	}
	return krsync
}

// slowDirs are the directories of one benchmark: the two mountpoints, the destination's
// backing directory and the tools' scratch space, all outside the tree.
type slowDirs struct{ srcMnt, dstMnt, dst, work string }

func runSlowRounds(b *testing.B, tree, scratch string, tools []slowTool, cfg slowfs.Config, rounds, baselineRounds int) []slowResults {
	b.Helper()
	d := slowDirs{filepath.Join(scratch, "mnt-src"), filepath.Join(scratch, "mnt-dst"),
		filepath.Join(scratch, "dst"), filepath.Join(scratch, "work")}
	for _, dir := range []string{d.srcMnt, d.dstMnt} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	res := make([]slowResults, len(tools))
	for round := range rounds {
		for i, tool := range tools {
			if tool.baseline && round >= baselineRounds {
				continue
			}
			cp := runSlowTool(b, tool, tree, d, cfg)
			b.Logf("round %d %s: copy %.1fs, %d metadata requests", round+1, tool.name, cp.took.Seconds(), cp.ops())
			res[i].copy = append(res[i].copy, cp)
			if round == 0 {
				checkSlowCopy(b, tool, tree, d.dst)
			}
			if tool.resync {
				rs := runSlowTool(b, tool, tree, d, cfg)
				b.Logf("round %d %s: unchanged re-sync %.1fs, %d metadata requests", round+1, tool.name, rs.took.Seconds(), rs.ops())
				res[i].resync = append(res[i].resync, rs)
			}
			// Wiped on the backing directory, outside the mount, so that it costs no requests.
			for _, dir := range []string{d.dst, d.work} {
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return res
}

// runSlowTool mounts the tree and the destination, runs one tool between them, and
// unmounts both (so that no kernel cache carries over from one run to the next).
func runSlowTool(b *testing.B, tool slowTool, tree string, d slowDirs, cfg slowfs.Config) slowRun {
	b.Helper()
	for _, dir := range []string{d.dst, d.work} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	src, err := slowfs.Mount(tree, d.srcMnt, cfg)
	if err != nil {
		b.Fatal(err)
	}
	dst, err := slowfs.Mount(d.dst, d.dstMnt, cfg)
	if err != nil {
		unmountSlow(b, src)
		b.Fatal(err)
	}
	argv := tool.argv(d.srcMnt, d.dstMnt, d.work)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = d.work
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(d.work, "state"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	unix.Sync()
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	unmountSlow(b, src)
	unmountSlow(b, dst)
	if err != nil {
		b.Fatalf("%s: %v\n%s", tool.name, err, lastLines(out.String(), 20))
	}
	return slowRun{took: took, src: src.Counts(), dst: dst.Counts()}
}

// unmountSlow unmounts, retrying while a straggling child process still holds the mount.
func unmountSlow(b *testing.B, f *slowfs.FS) {
	b.Helper()
	var err error
	for range 50 {
		if err = f.Unmount(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal(err)
}

// checkSlowCopy compares the destination's backing directory with the tree (outside the
// mounts, so that the comparison costs no requests).
func checkSlowCopy(b *testing.B, tool slowTool, tree, dst string) {
	b.Helper()
	compareCopy(b, tool.name, tool.verify, tree, dst)
}

func medianRun(runs []slowRun) (time.Duration, uint64) {
	ds := make([]time.Duration, len(runs))
	ops := make([]uint64, len(runs))
	for i, r := range runs {
		ds[i], ops[i] = r.took, r.ops()
	}
	slices.Sort(ops)
	return median(ds), ops[len(ops)/2]
}

func writeSlowTable(w0 *bytes.Buffer, shape syncShape, cfg slowfs.Config, tools []slowTool, res []slowResults, rounds, baselineRounds int) {
	files := shape.spec.Files + shape.spec.BigFiles
	fmt.Fprintf(w0, "\n### %s: %d files, %v per metadata request, kernel cache %v, source and destination on slowfs\n\n", shape.name, files, cfg.Delay, cfg.EntryTTL)
	fmt.Fprintf(w0, "Medians of %d alternated rounds (rsync, fpsync and xargs: %d); requests are metadata requests on both mounts (source + destination).\n\n",
		rounds, min(rounds, baselineRounds))
	w := tabwriter.NewWriter(w0, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "| tool\t copy\t speed-up\t requests\t per file\t src / dst\t all copies (s)\t")
	fmt.Fprintln(w, "|---\t---:\t---:\t---:\t---:\t---:\t---\t")
	baseCopy, _ := medianRun(res[0].copy)
	for i, tool := range tools {
		if len(res[i].copy) == 0 {
			continue
		}
		c, ops := medianRun(res[i].copy)
		first := res[i].copy[0]
		fmt.Fprintf(w, "| %s\t %.1fs\t %.2f×\t %d\t %.1f\t %d / %d\t %s\t\n", tool.name, c.Seconds(), baseCopy.Seconds()/c.Seconds(),
			ops, float64(ops)/float64(files), first.src.Metadata(), first.dst.Metadata(), slowSeconds(res[i].copy))
	}
	for i, tool := range tools {
		if len(res[i].resync) == 0 {
			continue
		}
		r, ops := medianRun(res[i].resync)
		first := res[i].resync[0]
		baseResync := r
		if len(res[0].resync) > 0 {
			baseResync, _ = medianRun(res[0].resync)
		}
		fmt.Fprintf(w, "| %s (unchanged re-sync)\t %.1fs\t %.2f×\t %d\t %.1f\t %d / %d\t %s\t\n", tool.name, r.Seconds(),
			baseResync.Seconds()/r.Seconds(), ops, float64(ops)/float64(files), first.src.Metadata(), first.dst.Metadata(), slowSeconds(res[i].resync))
	}
	w.Flush()
	fmt.Fprintln(w0, "\nRequests by kind (first round, source + destination):")
	fmt.Fprintln(w0)
	for i, tool := range tools {
		if len(res[i].copy) > 0 {
			fmt.Fprintf(w0, "- %s: %s\n", tool.name, opsByKind(res[i].copy[0].src.Add(res[i].copy[0].dst)))
		}
		if len(res[i].resync) > 0 {
			fmt.Fprintf(w0, "- %s re-sync: %s\n", tool.name, opsByKind(res[i].resync[0].src.Add(res[i].resync[0].dst)))
		}
	}
}

func opsByKind(c slowfs.Counts) string {
	m := c.NonZero()
	var parts []string
	for op := slowfs.OpLookup; op.Delayed(); op++ {
		if n := m[op.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", op, n))
		}
	}
	return strings.Join(parts, ", ")
}

func slowSeconds(runs []slowRun) string {
	parts := make([]string, len(runs))
	for i, r := range runs {
		parts[i] = fmt.Sprintf("%.1f", r.took.Seconds())
	}
	return strings.Join(parts, " ")
}

// writeSlowResults writes the report with the conditions and exact commands to
// KRSYNC_BENCH_RESULTS (default bench/RESULTS.md).
func writeSlowResults(b *testing.B, tables, krsync string, tools []slowTool, cfg slowfs.Config) {
	b.Helper()
	path := os.Getenv("KRSYNC_BENCH_RESULTS")
	if path == "-" {
		return
	}
	if path == "" {
		path = "RESULTS.md"
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	rsyncVersion, _ := exec.Command("rsync", "--version").Output()
	fpartVersion, _ := exec.Command("fpart", "-V").CombinedOutput()
	krsyncVersion, _ := exec.Command(krsync, "version").CombinedOutput()
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Slow-storage benchmark (`make bench-slow`)\n\n")
	fmt.Fprintf(&buf, "Written by bench/slow_test.go; do not edit by hand.\n\n")
	fmt.Fprintf(&buf, "- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&buf, "- Machine: %d CPUs (nproc), Linux %s, %s\n", runtime.NumCPU(), unix.ByteSliceToString(uts.Release[:]),
		firstLine(string(rsyncVersion)))
	fmt.Fprintf(&buf, "- fpart: %s\n", firstLine(string(fpartVersion)))
	fmt.Fprintf(&buf, "- krsync: %s\n", firstLine(string(krsyncVersion)))
	fmt.Fprintf(&buf, "- Storage: both trees behind bench/slowfs (FUSE pass-through, %v per metadata request, names and attributes cached by the kernel for %v, data at local-disk speed)\n", cfg.Delay, cfg.EntryTTL)
	fmt.Fprintf(&buf, "- Command: `%s`\n\n", slowCommandLine())
	fmt.Fprintf(&buf, "Commands (SRC and DST are the two mounts, WORK scratch space on local disk):\n\n")
	for _, tool := range tools {
		fmt.Fprintf(&buf, "- %s: `%s`\n", tool.name, strings.Join(quoteArgs(tool.argv("SRC", "DST", "WORK")), " "))
	}
	buf.WriteString(tables)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %s", path)
}

// slowCommandLine is the make command with the knobs this run was given.
func slowCommandLine() string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KRSYNC_BENCH_SHAPES=") || strings.HasPrefix(kv, "KRSYNC_BENCH_ROUNDS=") ||
			strings.HasPrefix(kv, "KRSYNC_BENCH_WORKERS=") || strings.HasPrefix(kv, "KRSYNC_SLOW_") {
			env = append(env, kv)
		}
	}
	slices.Sort(env)
	return strings.TrimSpace(strings.Join(env, " ") + " make bench-slow")
}

// quoteArgs shows programs by their names and quotes what a shell would split.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if filepath.IsAbs(a) {
			a = filepath.Base(a)
		}
		if strings.ContainsAny(a, " \"'$|&;<>*{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}
