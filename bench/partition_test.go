package bench

import (
	"github.com/krsync/krsync/internal/testing/testbin"

	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The partition benchmark times `krsync partition -L -f 2000` against `fpart -L -f 2000`
// on the same 1,000,000-entry tree, alternating the two programs, and prints the ratio,
// the time to the first partition line and the peak RSS of each.
//
//	go test -run '^$' -bench Partition -benchtime 1x ./bench/
//
// The tree (100 directories holding 1,000 directories of 999 empty files: 1,000,101
// entries) is built once and kept in
// $TMPDIR/krsync-bench-tree-1m; delete it to rebuild.

const (
	benchDirs        = 1000
	benchFilesPerDir = 999
	benchRounds      = 3
)

func BenchmarkPartition(b *testing.B) {
	fpartPath := lookBinary(b, "fpart")
	tree := benchTree(b)
	krsync := buildKrsync(b)
	programs := []struct {
		name string
		argv []string
	}{
		{"fpart", []string{fpartPath, "-L", "-f", "2000", tree}},
		{"krsync", []string{krsync, "partition", "-L", "-f", "2000", tree}},
	}
	for b.Loop() {
		results := map[string][]runResult{}
		// Alternate, so both see the same page cache and machine load.
		for round := range benchRounds + 1 {
			for _, p := range programs {
				res := timeRun(b, p.argv)
				if round == 0 {
					continue // warm-up: both read the tree once into the page cache
				}
				results[p.name] = append(results[p.name], res)
			}
		}
		var startup time.Duration
		for range benchRounds {
			start := time.Now()
			if err := exec.Command(krsync, "version").Run(); err != nil {
				b.Fatalf("krsync version: %v", err)
			}
			if d := time.Since(start); startup == 0 || d < startup {
				startup = d
			}
		}
		f, k := best(results["fpart"]), best(results["krsync"])
		if f.lines != k.lines {
			b.Errorf("fpart printed %d entries, krsync %d", f.lines, k.lines)
		}
		b.Logf("%d entries, best of %d alternated runs:", k.lines, benchRounds)
		b.Logf("  fpart : total %v, first partition %v, peak RSS %d KiB", f.total, f.first, f.maxRSS)
		b.Logf("  krsync: total %v, first partition %v, peak RSS %d KiB", k.total, k.first, k.maxRSS)
		b.Logf("  ratio krsync/fpart: %.2f (target <= 1.0), first partition %v (target < 100ms)",
			k.total.Seconds()/f.total.Seconds(), k.first)
		b.Logf("  of which starting the krsync binary (krsync version, best of %d): %v", benchRounds, startup)
		b.ReportMetric(k.total.Seconds()/f.total.Seconds(), "krsync/fpart")
		b.ReportMetric(float64(k.first.Microseconds())/1000, "first-ms")
		b.ReportMetric(float64(startup.Microseconds())/1000, "startup-ms")
		b.ReportMetric(float64(k.maxRSS)/1024, "krsync-MiB")
		b.ReportMetric(float64(f.maxRSS)/1024, "fpart-MiB")
	}
}

// runResult is one timed run of a partitioner.
type runResult struct {
	total, first time.Duration
	maxRSS       int64 // KiB
	lines        int
}

func best(rs []runResult) runResult {
	b := rs[0]
	for _, r := range rs[1:] {
		if r.total < b.total {
			b.total = r.total
		}
		if r.first < b.first {
			b.first = r.first
		}
		b.maxRSS = max(b.maxRSS, r.maxRSS)
	}
	return b
}

// timeRun runs argv, counting stdout lines and noting when the first one arrives.
func timeRun(b *testing.B, argv []string) runResult {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("%v: %v", argv, err)
	}
	var res runResult
	r := bufio.NewReaderSize(out, 1<<20)
	for {
		_, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			break
		}
		if res.lines == 0 {
			res.first = time.Since(start)
		}
		res.lines++
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("%v: %v", argv, err)
	}
	res.total = time.Since(start)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.maxRSS = ru.Maxrss
	}
	return res
}

// lookBinary finds a program once; without it the benchmark skips (fails under CI=true).
func lookBinary(b *testing.B, name string) string {
	b.Helper()
	return testbin.Program(b, name)
}

// buildKrsync is the krsync binary of this module, as users run it.
func buildKrsync(b *testing.B) string { return testbin.Krsync(b) }

// benchTree returns the cached 1,000,000-entry tree, building it when missing or partial.
func benchTree(b *testing.B) string {
	b.Helper()
	tree := filepath.Join(os.TempDir(), "krsync-bench-tree-1m")
	done := tree + ".complete"
	if _, err := os.Stat(done); err == nil {
		return tree
	}
	b.Logf("building %d-entry tree in %s (once)", 1+100+benchDirs*(benchFilesPerDir+1), tree)
	if err := os.RemoveAll(tree); err != nil {
		b.Fatal(err)
	}
	dirs := make(chan int)
	errs := make(chan error, runtime.NumCPU()*2)
	var wg sync.WaitGroup
	for range cap(errs) {
		wg.Go(func() {
			for d := range dirs {
				if err := makeBenchDir(tree, d); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for d := range benchDirs {
		dirs <- d
	}
	close(dirs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return tree
}

func makeBenchDir(tree string, d int) error {
	dir := filepath.Join(tree, fmt.Sprintf("%02d", d%100), fmt.Sprintf("d%04d", d))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for f := range benchFilesPerDir {
		fd, err := syscall.Open(filepath.Join(dir, fmt.Sprintf("f%04d", f)), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		syscall.Close(fd)
	}
	return nil
}
