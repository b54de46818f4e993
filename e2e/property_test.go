package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// propertySeeds are the seeds `make test` runs. KRSYNC_PROPERTY_SEEDS (a number of random
// seeds, or a comma-separated list of seeds to reproduce a failure) runs others; scripts/fuzz
// runs a few random ones each time.
var propertySeeds = []uint64{1, 2, 3, 20261130}

func seedsFromEnv(t *testing.T) []uint64 {
	t.Helper()
	v := os.Getenv("KRSYNC_PROPERTY_SEEDS")
	if v == "" {
		return propertySeeds
	}
	if !strings.Contains(v, ",") {
		if n, err := strconv.Atoi(v); err == nil && n < 1000 {
			seeds := make([]uint64, n)
			for i := range seeds {
				seeds[i] = rand.Uint64()
			}
			return seeds
		}
	}
	var seeds []uint64
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			t.Fatalf("KRSYNC_PROPERTY_SEEDS=%q: %v", v, err)
		}
		seeds = append(seeds, n)
	}
	return seeds
}

// TestPropertyRandomTreesCopyExactly is the property that exit 0 means "the destination
// equals the source": random trees with hostile names at every depth (the top level
// included), hard links, symlinks, FIFOs, empty directories, odd modes and owners, copied
// with a random number of workers and a random partition size so that every kind of entry
// lands first, last and in the middle of a partition. Each seed is copied into a fresh
// destination, again into the same one (nothing to do, still equal) and into a second one
// with the same state directory; the independent comparator checks every result, and the
// source must be untouched. The seed and the settings are in the subtest's name.
func TestPropertyRandomTreesCopyExactly(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	for _, seed := range seedsFromEnv(t) {
		r := rand.New(rand.NewPCG(seed, 0x70726f70))
		workers := 1 + r.IntN(6)
		perPartition := 1 + r.IntN(40)
		entries := 150 + r.IntN(350)
		name := fmt.Sprintf("seed=%d/workers=%d/files-per-partition=%d/entries=%d", seed, workers, perPartition, entries)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newLocalWorld(t)
			sum, err := treegen.Random(w.src, treegen.RandomSpec{Seed: seed, Entries: entries})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("seed %d: %d files, %d dirs, %d symlinks, %d extra hard links, %d FIFOs %v",
				seed, sum.Files, sum.Dirs, sum.Symlinks, sum.Hardlink, sum.Specials, sum.Notes)
			source := snapshotTree(t, w.src)
			stateDir := filepath.Join(t.TempDir(), "state")
			args := func(dest string) []string {
				return []string{"--source", w.src, "--dest", dest, "--workers", strconv.Itoa(workers),
					"--files-per-partition", strconv.Itoa(perPartition), "--state-dir", stateDir}
			}

			syncLocal(t, w, runOptions{}, args(w.dest)...)
			compareTrees(t, w.src, w.dest)

			syncLocal(t, w, runOptions{}, args(w.dest)...)
			compareTrees(t, w.src, w.dest)

			other := filepath.Join(w.out, "other")
			syncLocal(t, w, runOptions{}, args(other)...)
			compareTrees(t, w.src, other)

			requireUnchanged(t, source, "the source")
			if t.Failed() {
				t.Logf("reproduce with KRSYNC_PROPERTY_SEEDS=%d go test -run 'TestPropertyRandomTreesCopyExactly' ./e2e/", seed)
			}
		})
	}
}
