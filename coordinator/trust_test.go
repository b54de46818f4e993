package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/leaseapi"
)

// Tests for the promise "exit 0 means the destination equals the source" (issue 9), on the
// coordinator's side.

// TestVanishedEntriesDoNotFailTheRun: an entry the walk listed but found gone (fpart hands
// Handler.Error an error wrapping ENOENT from lstat or open) is counted as vanished and the
// run ends complete; an entry that exists but cannot be read still makes it incomplete.
func TestVanishedEntriesDoNotFailTheRun(t *testing.T) {
	tests := []struct {
		name         string
		errs         map[string]error
		wantVanished int64
		wantWalkErrs int64
	}{
		{"vanished file and directory", map[string]error{
			"gone-file": fmt.Errorf("/src/gone-file: %w", fmt.Errorf("lstat: %w", unix.ENOENT)),
			"gone-dir":  fmt.Errorf("/src/gone-dir: %w", fmt.Errorf("open: %w", unix.ENOENT)),
		}, 2, 0},
		{"unreadable still fails", map[string]error{
			"gone":   fmt.Errorf("/src/gone: %w", fmt.Errorf("lstat: %w", unix.ENOENT)),
			"locked": fmt.Errorf("/src/locked: %w", fmt.Errorf("open: %w", unix.EACCES)),
		}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			walk := func(ctx context.Context, h WalkHandler) error {
				for _, rel := range slices.Sorted(mapsKeys(tt.errs)) {
					h.Error(rel, tt.errs[rel])
				}
				if err := h.Partition(part("a")); err != nil {
					return err
				}
				return h.Dir(".")
			}
			r := start(t, Config{Walk: walk, StateDir: filepath.Join(t.TempDir(), "state")})
			drain(t, r.client, "w")
			st, err := r.wait(t)
			if st.Vanished != tt.wantVanished || st.WalkErrors != tt.wantWalkErrs {
				t.Fatalf("status %+v; want %d vanished, %d walk errors", st, tt.wantVanished, tt.wantWalkErrs)
			}
			if wantErr := tt.wantWalkErrs > 0; (err != nil) != wantErr || (wantErr && !errors.Is(err, ErrWalkErrors)) {
				t.Fatalf("Run = %v; want an ErrWalkErrors: %v", err, wantErr)
			}
		})
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestTransferCountersSaturate: two completions of MaxInt64 files do not wrap into a
// negative count (issue 9, item 11); negative numbers are refused with 400.
func TestTransferCountersSaturate(t *testing.T) {
	r := start(t, Config{Walk: staticWalk([][]string{{"a"}, {"b"}}, nil)})
	for range 2 {
		l := mustLease(t, r.client, "w")
		body := fmt.Sprintf(`{"token":%q,"stats":{"files_transferred":%d,"bytes_transferred":%d}}`, l.Token, int64(math.MaxInt64), int64(math.MaxInt64))
		if code, resp := do(t, "POST", r.url+"/v1/partitions/"+fmt.Sprint(l.Partition)+"/complete", testToken, body); code != 204 {
			t.Fatalf("complete: %d %s", code, resp)
		}
	}
	code, body := do(t, "GET", r.url+leaseapi.PathStatus, testToken, "")
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"files_transferred":%d`, int64(math.MaxInt64))) ||
		!strings.Contains(body, fmt.Sprintf(`"bytes_transferred":%d`, int64(math.MaxInt64))) {
		t.Fatalf("status %d %s; want both counters at MaxInt64", code, body)
	}
}

// TestLeasesCarryTempDirAndSourceCheck: every lease names the run's temporary directory and a
// few top-level source names (directories first, sorted, never krsync's own); only the
// directory-metadata partition holding the root asks to remove the temporary directory,
// wherever "." falls in byte order ("#x" and "-y" sort before it).
func TestLeasesCarryTempDirAndSourceCheck(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"zdir", "adir", "#x", "-y"} {
		if err := os.Mkdir(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := writeFile(filepath.Join(src, fmt.Sprintf("file%02d", i)), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFile(filepath.Join(src, "bad\xffname"), "x"); err != nil {
		t.Fatal(err)
	}
	dirs := []string{"#x", "#x/a", "-y", ".", "adir", "zdir"}
	r := start(t, Config{Source: src, Dest: "/dest", DirsPerPartition: 2,
		Walk: staticWalk([][]string{{"file00"}, {"#x/a"}}, dirs)})
	leases := drain(t, r.client, "w")
	if _, err := r.wait(t); err != nil {
		t.Fatal(err)
	}
	wantCheck := []string{"#x", "-y", "adir", "zdir", "file00", "file01", "file02", "file03"}
	var removers []string
	for _, l := range leases {
		if !strings.HasPrefix(l.TempDir, TempDirPrefix) || len(l.TempDir) != len(TempDirPrefix)+12 {
			t.Errorf("partition %d: TempDir %q", l.Partition, l.TempDir)
		}
		if !slices.Equal(l.SourceCheck, wantCheck) {
			t.Errorf("partition %d: SourceCheck %q, want %q", l.Partition, l.SourceCheck, wantCheck)
		}
		if l.RemoveTempDir {
			removers = append(removers, strings.Join(l.Paths(), ","))
		}
	}
	if !slices.Equal(removers, []string{"-y,."}) {
		t.Fatalf("partitions asking to remove the temp dir: %q; want only the one holding \".\"", removers)
	}
	if TempDirName("a") != TempDirName("a") || TempDirName("a") == TempDirName("b") {
		t.Error("TempDirName is not one name per identity")
	}
}

// TestNewRefusesOwnNamesInTheSource: a state directory inside the destination whose path the
// source holds too (the manifests' /dest/.krsync-state and a source that was itself a krsync
// destination) would have the source's copy written over the live journal (issue 9, item 7);
// a source holding the run's temporary directory name likewise.
func TestNewRefusesOwnNamesInTheSource(t *testing.T) {
	root := t.TempDir()
	dest := filepath.Join(root, "dest")
	walk := staticWalk(nil, nil)
	probe, err := New(Config{Source: t.TempDir(), Dest: dest, Token: "t", Walk: walk}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		make     []string // paths to create in the source; a trailing / makes a directory
		stateDir string
		want     string // "" means accepted
	}{
		{"state dir path in the source", []string{".krsync-state/", ".krsync-state/journal.db"}, filepath.Join(dest, ".krsync-state"), "--state-dir"},
		{"state dir name is a file in the source", []string{".krsync-state"}, filepath.Join(dest, ".krsync-state"), "--state-dir"},
		{"non-directory on the way", []string{"a"}, filepath.Join(dest, "a", "state"), "--state-dir"},
		{"state dir is the destination", nil, dest, "--state-dir"},
		{"source has the parent only", []string{"a/"}, filepath.Join(dest, "a", "state"), ""},
		{"state dir outside the destination", []string{".krsync-state/"}, filepath.Join(root, "elsewhere"), ""},
		{"no clash", []string{"other"}, filepath.Join(dest, ".krsync-state"), ""},
		{"temporary directory name", []string{probe.leases.extra.TempDir + "/"}, "", "temporary directory"},
		{"a run's temporary directory name", []string{probe.leases.extra.TempDir + ".p1-a1-x"}, "", "temporary directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := t.TempDir()
			for _, p := range tt.make {
				var err error
				if strings.HasSuffix(p, "/") {
					err = os.MkdirAll(filepath.Join(src, p), 0o755)
				} else {
					err = writeFile(filepath.Join(src, p), "x")
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			cfg := Config{Source: src, Dest: dest, StateDir: tt.stateDir, Token: "t", Walk: walk}
			if tt.want == "temporary directory" {
				cfg.Identity = probe.cfg.Identity
			}
			_, err := New(cfg, testLogger(t))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New = %v; want accepted", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("New = %v; want a one-line ErrInvalidConfig naming %q", err, tt.want)
			}
		})
	}
}

// TestIdentityIncludesDestinationAndVolumes: a journal written for one destination (or, in a
// pod, one pair of volumes) is refused for another (issue 9, item 2).
func TestIdentityIncludesDestinationAndVolumes(t *testing.T) {
	src := t.TempDir()
	base := Config{Source: src, Dest: "/d1", Volumes: "source=pv/a dest=pv/b"}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"other destination", Config{Source: src, Dest: "/d2", Volumes: base.Volumes}},
		{"other volumes", Config{Source: src, Dest: base.Dest, Volumes: "source=pv/c dest=pv/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stateDir := t.TempDir()
			r1 := start(t, Config{Source: base.Source, Dest: base.Dest, Volumes: base.Volumes, StateDir: stateDir, Walk: newFeed().walk})
			mustStatus(t, r1)
			r1.stop(t)
			cfg := tt.cfg
			cfg.StateDir, cfg.Walk = stateDir, staticWalk([][]string{{"a"}}, nil)
			r2 := start(t, cfg)
			if _, err := r2.wait(t); !errors.Is(err, ErrJournalMismatch) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Run on another run's journal = %v; want ErrJournalMismatch (and ErrInvalidConfig: exit 2)", err)
			}
		})
	}
}

// mustStatus waits until the coordinator answers, i.e. its journal is open.
func mustStatus(t *testing.T, r *running) {
	t.Helper()
	if _, err := r.client.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestStateDirCreatedByAnInterruptedRunIsRemoved: the run that created the state directory
// is interrupted; the next one (which finds it) finishes, removes it, and puts back its
// parent's mtime (issue 9, item 7: it used to stay behind, empty, in the destination).
func TestStateDirCreatedByAnInterruptedRunIsRemoved(t *testing.T) {
	dest := t.TempDir()
	stateDir := filepath.Join(dest, ".krsync-state")
	src := t.TempDir()
	f := newFeed(".")
	r1 := start(t, Config{Source: src, Dest: dest, StateDir: stateDir, Walk: f.walk})
	mustStatus(t, r1)
	r1.stop(t)
	if _, err := os.Stat(stateDir); err != nil {
		t.Fatalf("state dir after an interrupted run: %v; want it kept", err)
	}
	mtime := time.Unix(1_500_000_000, 0)
	if err := os.Chtimes(dest, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	r2 := start(t, Config{Source: src, Dest: dest, StateDir: stateDir, Walk: staticWalk([][]string{{"a"}}, []string{"."})})
	drain(t, r2.client, "w")
	if _, err := r2.wait(t); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stateDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("state dir after the finishing run: %v; want it removed", err)
	}
	if fi, err := os.Stat(dest); err != nil || !fi.ModTime().Equal(mtime) {
		t.Fatalf("destination root mtime %v (%v); want %v put back", fi.ModTime(), err, mtime)
	}
}
