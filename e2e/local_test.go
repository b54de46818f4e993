package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// localWorld is one scene of a `krsync local` test: world/src is the source, world/out the
// destination's parent, and stateHome the XDG_STATE_HOME of the run, so the default state
// directory is observable and nothing lands in the real home.
type localWorld struct {
	world, src, out, dest, stateHome string
}

func newLocalWorld(t *testing.T) localWorld {
	t.Helper()
	w := localWorld{world: publicDir(t), stateHome: t.TempDir()}
	w.src = filepath.Join(w.world, "src")
	w.out = filepath.Join(w.world, "out")
	w.dest = filepath.Join(w.out, "dest")
	if err := os.Mkdir(w.out, 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w localWorld) env() []string { return []string{"XDG_STATE_HOME=" + w.stateHome} }

// leftovers lists what the runs left in the state home, empty directories aside.
func (w localWorld) leftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(w.stateHome, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			left = append(left, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// syncLocal runs `krsync local` with JSON logs and fails the test unless it exits 0.
func syncLocal(t *testing.T, w localWorld, opts runOptions, args ...string) krsyncRun {
	t.Helper()
	opts.env = append(opts.env, w.env()...)
	run := runKrsync(t, opts, append([]string{"--log-format=json", "local"}, args...)...)
	if run.code != 0 {
		t.Fatalf("krsync local %q exited %d:\n%s", args, run.code, truncateLines(run.stderr, 60))
	}
	return run
}

// TestLocalHostileTree is the acceptance test of `krsync local`: a hostile tree with a
// 100 MiB file is copied exactly, the source is untouched, nothing is written outside the
// destination, a second run transfers nothing and a third copies only what changed.
func TestLocalHostileTree(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	w := newLocalWorld(t)
	sum := newHostileTree(t, w.src, hostileSpec(1001, 1500, 100<<20))
	before := snapshotTree(t, w.src)

	args := []string{"--source", w.src, "--dest", w.dest, "--workers", "4"}
	first := syncLocal(t, w, runOptions{}, args...)
	compareTrees(t, w.src, w.dest)
	rsyncSeesNoChanges(t, w.src, w.dest)
	requireUnchanged(t, before, "the source")
	if got := dirNames(t, w.out); !slices.Equal(got, []string{"dest"}) {
		t.Errorf("the destination's parent holds %q, want only dest", got)
	}
	if got := dirNames(t, w.world); !slices.Equal(got, []string{"out", "src"}) {
		t.Errorf("the test directory holds %q, want only out and src", got)
	}
	if left := w.leftovers(t); len(left) > 0 {
		t.Errorf("a successful run left state behind: %q", left)
	}
	checkStateDirAnnounced(t, first, w)
	summary := summaryOf(t, first)
	if n := summaryInt(t, summary, "files_transferred"); n == 0 || n > int64(sum.Files+sum.Hardlink) {
		t.Errorf("first run transferred %d files; the tree has %d files and %d extra links", n, sum.Files, sum.Hardlink)
	}
	if n := summaryInt(t, summary, "partitions_failed"); n != 0 {
		t.Errorf("%d partitions failed", n)
	}

	t.Run("unchanged re-sync transfers nothing", func(t *testing.T) {
		again := syncLocal(t, w, runOptions{}, args...)
		if n := summaryInt(t, summaryOf(t, again), "files_transferred"); n != 0 {
			t.Errorf("second run on an unchanged tree transferred %d files", n)
		}
		compareTrees(t, w.src, w.dest)
		rsyncSeesNoChanges(t, w.src, w.dest)
		requireUnchanged(t, before, "the source")
	})

	t.Run("changed files only are transferred", func(t *testing.T) {
		changed := []string{"d03/f0000003", "hostile/names/with space", "hostile/hard/c/d/link 2"}
		later := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
		for _, rel := range changed {
			path := filepath.Join(w.src, rel)
			parent := filepath.Dir(path)
			info, err := os.Stat(parent)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("changed "+rel), 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, later, later); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(parent, info.ModTime(), info.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
		run := syncLocal(t, w, runOptions{}, args...)
		if n := summaryInt(t, summaryOf(t, run), "files_transferred"); n != int64(len(changed)) {
			t.Errorf("transferred %d files after changing %d", n, len(changed))
		}
		compareTrees(t, w.src, w.dest)
		rsyncSeesNoChanges(t, w.src, w.dest)
	})
}

// checkStateDirAnnounced checks the run said where its state directory is, and that it is
// outside the source and the destination (issue 6: without --state-dir nothing lands there).
func checkStateDirAnnounced(t *testing.T, run krsyncRun, w localWorld) {
	t.Helper()
	records, _ := logLines(run.stderr)
	for _, rec := range records {
		dir, ok := rec["state_dir"].(string)
		if !ok {
			continue
		}
		for _, inside := range []string{w.src, w.dest} {
			if dir == inside || strings.HasPrefix(dir, inside+"/") {
				t.Errorf("default state directory %s is inside %s", dir, inside)
			}
		}
		return
	}
	t.Errorf("the log never says where the state directory is:\n%s", truncateLines(run.stderr, 20))
}

// TestLocalVariants copies smaller hostile trees in the ways a new user would call krsync.
func TestLocalVariants(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	tests := []struct {
		name string
		// args returns the command line (after "local") and the directory krsync copies into.
		args  func(t *testing.T, w localWorld) (args []string, into string)
		files int
		dir   bool // run in w.world
		// inSource runs krsync in the source directory.
		inSource bool
		check    func(t *testing.T, w localWorld, into string)
	}{
		{name: "destination exists and is empty", files: 200, args: func(t *testing.T, w localWorld) ([]string, string) {
			mkdir(t, w.dest)
			return []string{"--source", w.src, "--dest", w.dest}, w.dest
		}},
		{name: "source with a trailing slash", files: 200, args: func(t *testing.T, w localWorld) ([]string, string) {
			return []string{"--source", w.src + "/", "--dest", w.dest + "/"}, w.dest
		}},
		{name: "relative paths", files: 200, dir: true, args: func(t *testing.T, w localWorld) ([]string, string) {
			return []string{"--source", "src", "--dest", "out/dest"}, w.dest
		}},
		{name: "one worker", files: 150, args: func(t *testing.T, w localWorld) ([]string, string) {
			return []string{"--source", w.src, "--dest", w.dest, "--workers", "1"}, w.dest
		}},
		{name: "more workers than partitions", files: 5, args: func(t *testing.T, w localWorld) ([]string, string) {
			return []string{"--source", w.src, "--dest", w.dest, "--workers", "8"}, w.dest
		}},
		{name: "small partitions", files: 200, args: func(t *testing.T, w localWorld) ([]string, string) {
			return []string{"--source", w.src, "--dest", w.dest, "--workers", "3", "--fpart-opts=-f 25 -zz"}, w.dest
		}},
		{name: "rsync options as a separate argument", files: 50, args: func(t *testing.T, w localWorld) ([]string, string) {
			// How a new user writes it; a flag parser must not mistake the value for a flag.
			return []string{"--source", w.src, "--dest", w.dest, "--rsync-opts", "-aH --numeric-ids"}, w.dest
		}},
		{name: "source is the current directory", files: 50, args: func(t *testing.T, w localWorld) ([]string, string) {
			return []string{"--source", ".", "--dest", "../out/dest"}, w.dest
		}, inSource: true},
		{name: "source root with an odd mode, owner and mtime", files: 50, args: func(t *testing.T, w localWorld) ([]string, string) {
			if err := os.Chown(w.src, 1234, 5678); err != nil && os.Geteuid() == 0 {
				t.Fatal(err)
			}
			if err := syscall.Chmod(w.src, 0o2750); err != nil {
				t.Fatal(err)
			}
			old := time.Date(2003, 4, 5, 6, 7, 8, 9, time.UTC)
			if err := os.Chtimes(w.src, old, old); err != nil {
				t.Fatal(err)
			}
			return []string{"--source", w.src, "--dest", w.dest}, w.dest
		}},
		{name: "destination through a symlink", files: 100, args: func(t *testing.T, w localWorld) ([]string, string) {
			real := filepath.Join(w.out, "real")
			mkdir(t, real)
			link := filepath.Join(w.world, "dest-link")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			return []string{"--source", w.src, "--dest", link}, real
		}, check: func(t *testing.T, w localWorld, into string) {
			if info, err := os.Lstat(filepath.Join(w.world, "dest-link")); err != nil || info.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("the destination symlink was replaced (%v)", err)
			}
		}},
		{name: "source through a symlink", files: 100, args: func(t *testing.T, w localWorld) ([]string, string) {
			link := filepath.Join(w.world, "src-link")
			if err := os.Symlink(w.src, link); err != nil {
				t.Fatal(err)
			}
			return []string{"--source", link, "--dest", w.dest}, w.dest
		}},
		{name: "sparse files with the user's rsync options", files: 100, args: func(t *testing.T, w localWorld) ([]string, string) {
			return []string{"--source", w.src, "--dest", w.dest, "--rsync-opts=--archive --hard-links --numeric-ids --sparse"}, w.dest
		}, check: func(t *testing.T, w localWorld, into string) {
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(into, "hostile/sparse.bin"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Blocks*512 >= st.Size/2 {
				t.Errorf("with --sparse the copy of a sparse file uses %d of %d bytes", st.Blocks*512, st.Size)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newLocalWorld(t)
			newHostileTree(t, w.src, hostileSpec(uint64(2000+i), tt.files, 0))
			args, into := tt.args(t, w)
			before := snapshotTree(t, w.src)
			opts := runOptions{}
			if tt.dir {
				opts.dir = w.world
			}
			if tt.inSource {
				opts.dir = w.src
			}
			syncLocal(t, w, opts, args...)
			compareTrees(t, w.src, into)
			rsyncSeesNoChanges(t, w.src, into)
			requireUnchanged(t, before, "the source")
			if left := w.leftovers(t); len(left) > 0 {
				t.Errorf("a successful run left state behind: %q", left)
			}
			if tt.check != nil {
				tt.check(t, w, into)
			}
		})
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestLocalBadInput: each mistake gets one line on stderr naming it, a non-zero exit, and
// nothing written anywhere (the whole scene, state home included, is unchanged).
func TestLocalBadInput(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	noRsync := t.TempDir() // a PATH without rsync
	tests := []struct {
		name string
		// setup prepares the scene and returns the arguments after "local".
		setup  func(t *testing.T, w localWorld) []string
		env    []string
		asUser bool // run as an unprivileged user when the tests run as root
		dir    bool // run in the destination's parent, where "" would resolve
		want   []string
	}{
		{name: "missing source", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", filepath.Join(w.world, "nope"), "--dest", w.dest}
		}, want: []string{"source", "nope"}},
		{name: "source is a file", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", filepath.Join(w.src, "d00", "f0000001"), "--dest", w.dest}
		}, want: []string{"source", "not a directory"}},
		{name: "unreadable source", asUser: true, setup: func(t *testing.T, w localWorld) []string {
			chmod(t, w.src, 0o700)
			return []string{"--source", w.src, "--dest", w.dest}
		}, want: []string{"source", "readable"}},
		{name: "destination not writable", asUser: true, setup: func(t *testing.T, w localWorld) []string {
			mkdir(t, w.dest)
			chmod(t, w.dest, 0o555)
			return []string{"--source", w.src, "--dest", w.dest}
		}, want: []string{"destination", "writable"}},
		{name: "destination parent not writable", asUser: true, setup: func(t *testing.T, w localWorld) []string {
			chmod(t, w.out, 0o555)
			return []string{"--source", w.src, "--dest", w.dest}
		}, want: []string{"destination"}},
		{name: "destination parent missing", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", filepath.Join(w.out, "no", "such", "dest")}
		}, want: []string{"destination"}},
		{name: "destination is a file", setup: func(t *testing.T, w localWorld) []string {
			if err := os.WriteFile(filepath.Join(w.out, "file"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--source", w.src, "--dest", filepath.Join(w.out, "file")}
		}, want: []string{"destination", "not a directory"}},
		{name: "destination inside the source", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", filepath.Join(w.src, "d01", "copy")}
		}, want: []string{"inside"}},
		{name: "destination is the source", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.src}
		}, want: []string{"inside"}},
		{name: "destination inside the source through a symlink", setup: func(t *testing.T, w localWorld) []string {
			link := filepath.Join(w.out, "src-link")
			if err := os.Symlink(w.src, link); err != nil {
				t.Fatal(err)
			}
			return []string{"--source", w.src, "--dest", filepath.Join(link, "copy")}
		}, want: []string{"inside"}},
		{name: "source inside the destination", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", filepath.Join(w.src, "d02"), "--dest", w.src}
		}, want: []string{"inside"}},
		{name: "empty destination (an unset shell variable)", dir: true, setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", ""}
		}, want: []string{"dest"}},
		{name: "empty source (an unset shell variable)", dir: true, setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", "", "--dest", w.dest}
		}, want: []string{"source"}},
		{name: "rsync missing from PATH", env: []string{"PATH=" + noRsync}, setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest}
		}, want: []string{"rsync"}},
		{name: "rsync binary missing", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--rsync", filepath.Join(w.world, "no-rsync")}
		}, want: []string{"rsync"}},
		{name: "unknown flag", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--bogus"}
		}, want: []string{"--bogus"}},
		{name: "missing --dest", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src}
		}, want: []string{"dest"}},
		{name: "zero workers", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--workers", "0"}
		}, want: []string{"workers"}},
		{name: "rsync option that breaks parallel use", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--rsync-opts=-a --delete"}
		}, want: []string{"--delete"}},
		{name: "bad fpart option", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--fpart-opts=-f notanumber"}
		}, want: []string{"fpart"}},
		{name: "fpart -E: directories instead of their files", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--fpart-opts=-zzz -E"}
		}, want: []string{"--fpart-opts", "-E"}},
		{name: "fpart -D: a directory instead of its files", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--fpart-opts=-D -f 2"}
		}, want: []string{"--fpart-opts", "-D"}},
		{name: "state directory is the destination", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--state-dir", w.dest}
		}, want: []string{"--state-dir", "destination itself"}},
		{name: "state directory is a file", setup: func(t *testing.T, w localWorld) []string {
			if err := os.WriteFile(filepath.Join(w.out, "file"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--source", w.src, "--dest", w.dest, "--state-dir", filepath.Join(w.out, "file")}
		}, want: []string{"state directory", "not a directory"}},
		{name: "an exclude pattern matching the source itself", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--fpart-opts=-zz -x " + filepath.Base(w.src)}
		}, want: []string{"--fpart-opts", "matches the source"}},
		{name: "zero files per partition", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--files-per-partition", "0"}
		}, want: []string{"--files-per-partition"}},
		{name: "absurd worker count", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--workers", "100000000"}
		}, want: []string{"--workers", "at most"}},
		{name: "summary file is a directory", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--summary-json", w.out}
		}, want: []string{"--summary-json", "directory"}},
		{name: "summary file inside the source", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--summary-json", filepath.Join(w.src, "d00", "s.json")}
		}, want: []string{"--summary-json", "inside --source"}},
		{name: "summary file inside the destination", setup: func(t *testing.T, w localWorld) []string {
			mkdir(t, w.dest)
			return []string{"--source", w.src, "--dest", w.dest, "--summary-json", filepath.Join(w.dest, "s.json")}
		}, want: []string{"--summary-json", "inside --dest"}},
		{name: "summary file in a missing directory", setup: func(t *testing.T, w localWorld) []string {
			return []string{"--source", w.src, "--dest", w.dest, "--summary-json", filepath.Join(w.out, "no", "s.json")}
		}, want: []string{"--summary-json", "does not exist"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.asUser && os.Geteuid() != 0 {
				// As root the test runs krsync as nobody; as another user it cannot take
				// the scene away from itself and still snapshot it.
				t.Skip("permission cases need root to run krsync as an unprivileged user")
			}
			w := newLocalWorld(t)
			if _, err := treegen.Generate(w.src, treegen.Spec{Seed: uint64(3000 + i), Files: 60, FanOut: 3, Depth: 1}); err != nil {
				t.Fatal(err)
			}
			args := tt.setup(t, w)
			opts := runOptions{env: append(w.env(), tt.env...)}
			if tt.asUser {
				opts.attr = unprivileged()
			}
			if tt.dir {
				opts.dir = w.out
			}
			world := snapshotTree(t, w.world)
			state := snapshotTree(t, w.stateHome)
			run := runKrsync(t, opts, append([]string{"local"}, args...)...)
			if run.code != 2 {
				t.Fatalf("exit %d on bad input, want 2; stderr:\n%s", run.code, run.stderr)
			}
			msg := strings.TrimRight(run.stderr, "\n")
			if msg == "" || strings.Contains(msg, "\n") {
				t.Errorf("want exactly one line on stderr, got:\n%s", run.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(strings.ToLower(msg), strings.ToLower(want)) {
					t.Errorf("stderr %q does not mention %q", msg, want)
				}
			}
			if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
				t.Errorf("stderr shows a crash: %s", msg)
			}
			if run.stdout != "" {
				t.Errorf("stdout is not empty: %q", run.stdout)
			}
			requireUnchanged(t, world, "the scene (source, destination and its parent)")
			requireUnchanged(t, state, "the state home")
			t.Logf("exit %d: %s", run.code, msg)
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestLocalRootPathsOfAnyBytes: the source and destination roots themselves may hold bytes
// that are not UTF-8 (a Latin-1 directory name), given as flags or as KRSYNC_ variables; the
// copy ends equal, into the directory named and no other (kong's string flags used to turn
// such bytes into U+FFFD, naming a path that did not exist).
func TestLocalRootPathsOfAnyBytes(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	base := t.TempDir()
	src := filepath.Join(base, "caf\xe9 source")
	if _, err := treegen.Generate(src, treegen.Spec{Seed: 61, Files: 40, FanOut: 2, Depth: 1}); err != nil {
		t.Fatal(err)
	}
	byFlag := filepath.Join(base, "d\xff\xfe by flag")
	byEnv := filepath.Join(base, "d\xe9 by env")
	for _, tc := range []struct {
		dest string
		args []string
		env  []string
	}{
		{byFlag, []string{"local", "--source", src, "--dest", byFlag}, nil},
		{byEnv, []string{"local"}, []string{"KRSYNC_SOURCE=" + src, "KRSYNC_DEST=" + byEnv}},
	} {
		run := runKrsync(t, runOptions{env: append([]string{"XDG_STATE_HOME=" + t.TempDir()}, tc.env...)}, tc.args...)
		if run.code != 0 {
			t.Fatalf("krsync %q: exit %d:\n%s", tc.args, run.code, run.stderr)
		}
		compareTrees(t, src, tc.dest)
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = fmt.Sprintf("%q", e.Name())
		}
		t.Errorf("%s holds %v; want the source and the two destinations only", base, names)
	}
}
