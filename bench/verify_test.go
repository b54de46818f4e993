package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/krsync/krsync/internal/testing/treegen"
)

// The verify benchmark compares an unchanged copy with its source two ways, alternated round
// by round: rsync's own no-change pass `rsync -aHn --delete --itemize-changes A/ B/` (what a
// user would run to check a copy) and `krsync verify --source A --dest B` (metadata only),
// and prints median wall times and the ratio. One untimed run of each warms the page cache.
//
//	go test -run '^$' -bench Verify -benchtime 1x ./bench/                          # 100,000 files
//	KRSYNC_BENCH_SHAPES=20k go test -run '^$' -bench Verify -benchtime 1x ./bench/  # 20,000
//
// BenchmarkMirror times the same two on a copy with 1% stale and 1% extraneous files.
//
// The tree and its copy are kept in $KRSYNC_BENCH_DIR (default $TMPDIR) as
// krsync-bench-sync-<shape> and krsync-bench-verify-<shape>-copy; delete them to rebuild.
func BenchmarkVerify(b *testing.B) {
	shape := syncShape{"100k", treegen.Plain100k(42)}
	if os.Getenv("KRSYNC_BENCH_SHAPES") == "20k" {
		shape = syncShape{"20k", treegen.Spec{Seed: 42, Files: 20_000}}
	}
	rounds := benchIntList(b, "KRSYNC_BENCH_ROUNDS", "3")[0]
	rsync := lookBinary(b, "rsync")
	krsync := buildKrsync(b)
	base := benchDir()
	src := syncBenchTree(b, base, shape)
	dest := verifyBenchCopy(b, rsync, src, filepath.Join(base, "krsync-bench-verify-"+shape.name+"-copy"))
	tools := []struct {
		name string
		argv []string
	}{
		{"rsync -aHn --delete --itemize-changes", []string{rsync, "-aHn", "--delete", "--itemize-changes", src + "/", dest + "/"}},
		{"krsync verify", []string{krsync, "--log-format=json", "verify", "--source", src, "--dest", dest}},
	}
	for b.Loop() {
		times := make([][]time.Duration, len(tools))
		for round := -1; round < rounds; round++ { // round -1 warms the cache
			for i, tool := range tools {
				took, out := timeVerifyTool(b, tool.argv, 0)
				if round == -1 && i == 0 && strings.TrimSpace(out) != "" {
					b.Fatalf("the copy is not unchanged, rsync itemizes:\n%s", lastLines(out, 10))
				}
				if round >= 0 {
					times[i] = append(times[i], took)
				}
			}
		}
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "\nshape %s, unchanged copy: median of %d alternated rounds\n", shape.name, rounds)
		w := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "tool\tmedian\t×rsync\tall\t")
		baseTime := median(times[0])
		for i, tool := range tools {
			m := median(times[i])
			fmt.Fprintf(w, "%s\t%.2fs\t%.2f\t%s\t\n", tool.name, m.Seconds(), m.Seconds()/baseTime.Seconds(), secondsList(times[i]))
		}
		w.Flush()
		fmt.Fprint(os.Stdout, buf.String())
		b.ReportMetric(median(times[1]).Seconds()/baseTime.Seconds(), "verify/rsync-n")
	}
}

// verifyBenchCopy returns the cached rsync -aH copy of src, making it when missing.
func verifyBenchCopy(b *testing.B, rsync, src, dest string) string {
	b.Helper()
	done := dest + ".complete"
	if _, err := os.Stat(done); err == nil {
		return dest
	}
	if err := os.RemoveAll(dest); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(rsync, "-aH", "--numeric-ids", src+"/", dest+"/").CombinedOutput(); err != nil {
		b.Fatalf("copy the tree: %v\n%s", err, lastLines(string(out), 10))
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return dest
}

// timeVerifyTool runs one comparison, which must exit with wantExit (0: the trees are equal;
// krsync verify exits 1 when they differ, rsync -n 0 either way), and returns its output.
func timeVerifyTool(b *testing.B, argv []string, wantExit int) (time.Duration, string) {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if code := cmd.ProcessState.ExitCode(); code != wantExit {
		b.Fatalf("%s: %v, want exit %d\n%s", strings.Join(argv, " "), err, wantExit, lastLines(out.String(), 10))
	}
	return took, out.String()
}
