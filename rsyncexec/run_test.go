package rsyncexec

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
)

// hostileTree has the names and file kinds that break naive scripts.
func hostileTree() []entry {
	return []entry{
		{path: "plain", content: "plain", uid: -1, gid: -1, mode: 0o644},
		{path: "with space/file name.txt", content: "spaces", uid: -1, gid: -1, mode: 0o640},
		{path: "tab\tname", content: "tab", uid: -1, gid: -1, mode: 0o600},
		{path: "new\nline", content: "newline", uid: -1, gid: -1, mode: 0o644},
		{path: "-leading-dash", content: "dash", uid: -1, gid: -1, mode: 0o644},
		{path: "--delete", content: "not an option", uid: -1, gid: -1, mode: 0o644},
		{path: "\xff\xfeinvalid-utf8", content: "latin1", uid: -1, gid: -1, mode: 0o644},
		{path: `quote"d and back\#134slash`, content: "quoted", uid: -1, gid: -1, mode: 0o644},
		{path: "dir/nested/deep", content: "deep", uid: -1, gid: -1, mode: 0o644},
		{path: "ro", mode: os.ModeDir | 0o555, uid: -1, gid: -1},
		{path: "ro/inside", content: "in a read-only dir", uid: -1, gid: -1, mode: 0o444},
		{path: "sgid", mode: os.ModeDir | os.ModeSetgid | 0o2775, uid: -1, gid: -1},
		{path: "sgid/f", content: "x", uid: -1, gid: -1, mode: 0o000},
		{path: "links/dangling", mode: os.ModeSymlink, content: "/nonexistent/target", uid: -1, gid: -1},
		{path: "links/rel", mode: os.ModeSymlink, content: "../plain", uid: -1, gid: -1},
		{path: "links/out", mode: os.ModeSymlink, content: "/etc/passwd", uid: -1, gid: -1},
		{path: "h1/a", content: "hard", uid: -1, gid: -1, mode: 0o644},
		{path: "h2/b", link: "h1/a"},
		{path: "h2/c", link: "h1/a"},
		{path: "empty", mode: os.ModeDir | 0o700, uid: -1, gid: -1},
		{path: "fifo", mode: os.ModeNamedPipe | 0o644, uid: -1, gid: -1},
	}
}

// nonRootOwners gives entries numeric owners that exist nowhere, when the test runs as root.
func nonRootOwners(entries []entry) []entry {
	if os.Geteuid() != 0 {
		return entries
	}
	for i := range entries {
		if entries[i].link == "" {
			entries[i].uid, entries[i].gid = 1000+i, 2000+i
		}
	}
	return entries
}

// listOf lists the entries' paths except directories that have entries below them.
func listOf(entries []entry) []string {
	var paths []string
	for _, e := range entries {
		if e.mode&os.ModeDir != 0 && e.path != "empty" {
			continue
		}
		paths = append(paths, e.path)
	}
	return paths
}

func TestRunHostileTree(t *testing.T) {
	rsync := testbin.Rsync(t)
	for _, mode := range listModes {
		t.Run(mode.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			entries := nonRootOwners(hostileTree())
			makeTree(t, src, entries)
			paths := listOf(entries)
			job := mode.apply(t, Job{Binary: rsync, Source: src, Dest: dst, List: list(paths...)})

			res, err := Run(context.Background(), job)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			mode.check(t, res.Args)
			if res.ExitCode != 0 || !res.Stats.Parsed || res.Stats.RegularFilesTransferred == 0 || res.FilesTransferred != res.Stats.RegularFilesTransferred {
				t.Errorf("result %+v", res)
			}
			srcTree, dstTree := readTree(t, src), readTree(t, dst)
			delete(srcTree, ".")
			delete(dstTree, ".")
			if diffs := diffTrees(srcTree, dstTree, nil, true); len(diffs) > 0 {
				t.Errorf("destination differs from source:\n%s", strings.Join(diffs, "\n"))
			}

			// A second run over the unchanged tree transfers nothing.
			res, err = Run(context.Background(), job)
			if err != nil {
				t.Fatalf("second Run: %v", err)
			}
			if res.Stats.RegularFilesTransferred != 0 || res.Stats.TotalTransferredSize != 0 {
				t.Errorf("second run transferred %d files, %d bytes; want 0", res.Stats.RegularFilesTransferred, res.Stats.TotalTransferredSize)
			}
			if job.ListDir != "" {
				if left, _ := os.ReadDir(job.ListDir); len(left) != 0 {
					t.Errorf("list files left behind: %v", left)
				}
			}
		})
	}
}

// TestRunDirsPass copies files in two partitions, then disturbs the destination directories
// the way later partitions and other workers do, and checks the directory pass puts every
// directory's mode, owner and mtime back without creating or recursing into anything.
func TestRunDirsPass(t *testing.T) {
	rsync := testbin.Rsync(t)
	for _, mode := range listModes {
		t.Run(mode.name, func(t *testing.T) { testDirsPass(t, rsync, mode) })
	}
}

func testDirsPass(t *testing.T, rsync string, mode listMode) {
	src, dst := t.TempDir(), t.TempDir()
	entries := nonRootOwners([]entry{
		{path: "a", mode: os.ModeDir | 0o755, uid: -1, gid: -1},
		{path: "a/f1", content: "1", mode: 0o644, uid: -1, gid: -1},
		{path: "a/f2", content: "2", mode: 0o644, uid: -1, gid: -1},
		{path: "a/ro", mode: os.ModeDir | 0o555, uid: -1, gid: -1},
		{path: "a/ro/f", content: "3", mode: 0o644, uid: -1, gid: -1},
		{path: "a/locked", mode: os.ModeDir | 0o000, uid: -1, gid: -1},
		{path: "a/locked/f", content: "4", mode: 0o644, uid: -1, gid: -1},
		{path: "sg", mode: os.ModeDir | os.ModeSetgid | 0o2770, uid: -1, gid: -1},
		{path: "sg/-x\ny", mode: os.ModeDir | 0o711, uid: -1, gid: -1},
		{path: "sg/-x\ny/f", content: "5", mode: 0o644, uid: -1, gid: -1},
		{path: "notcopied", content: "the directory pass must not create me", mode: 0o644, uid: -1, gid: -1},
		{path: "a/notcopied", content: "nor me", mode: 0o644, uid: -1, gid: -1},
	})
	makeTree(t, src, entries)
	root := entries[0].uid // the root's owner, when chowned below
	if os.Geteuid() == 0 {
		if err := os.Chown(src, root+7, root+8); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(src, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(src, oldTime, oldTime); err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]string{{"a/f1", "a/ro/f"}, {"a/f2", "a/locked/f", "sg/-x\ny/f"}} {
		res, err := Run(context.Background(), mode.apply(t, Job{Binary: rsync, Source: src, Dest: dst, List: list(part...)}))
		if err != nil {
			t.Fatalf("files pass %q: %v", part, err)
		}
		mode.check(t, res.Args)
	}
	// Later writes: new modes and mtimes on every destination directory, some of them in the
	// same second as the source's mtime (rsync compares whole seconds unless told otherwise).
	now, sameSecond := time.Now(), oldTime.Add(300*time.Millisecond)
	for _, d := range []string{"", "a", "a/ro", "a/locked", "sg", "sg/-x\ny"} {
		p := filepath.Join(dst, d)
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
		mtime := now
		if d == "a" || d == "sg/-x\ny" {
			mtime = sameSecond
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}

	dirs := []string{".", "a", "a/ro/", "a/locked/.", "sg", "sg/-x\ny", "notcopied", "a/notcopied"}
	res, err := Run(context.Background(), mode.apply(t, Job{Binary: rsync, Source: src, Dest: dst, List: list(dirs...), Dirs: true}))
	if err != nil {
		t.Fatalf("directory pass: %v", err)
	}
	mode.check(t, res.Args)
	if res.Stats.RegularFilesTransferred != 0 {
		t.Errorf("directory pass transferred %d files", res.Stats.RegularFilesTransferred)
	}
	srcTree, dstTree := readTree(t, src), readTree(t, dst)
	checked := []string{".", "a", "a/ro", "a/locked", "sg", "sg/-x\ny", "a/f1", "a/f2", "a/ro/f", "a/locked/f", "sg/-x\ny/f"}
	if diffs := diffTrees(srcTree, dstTree, checked, true); len(diffs) > 0 {
		t.Errorf("after the directory pass:\n%s", strings.Join(diffs, "\n"))
	}
	for _, p := range []string{"notcopied", "a/notcopied"} {
		if _, ok := dstTree[p]; ok {
			t.Errorf("the directory pass created the file %q", p)
		}
	}
}

// TestRunSameSecondRewrite rewrites a copied file with the same size in the same second:
// the next run must see the change (rsync's quick check compares whole seconds by default).
func TestRunSameSecondRewrite(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dst := t.TempDir(), t.TempDir()
	first := oldTime.Add(100 * time.Millisecond)
	makeTree(t, src, []entry{{path: "f", content: "aaaa", mode: 0o644, uid: -1, gid: -1, mtime: first}})
	job := Job{Binary: rsync, Source: src, Dest: dst, List: list("f")}
	if _, err := Run(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(src, "f")
	if err := os.WriteFile(p, []byte("bbbb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, first.Add(500*time.Millisecond), first.Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "f")); string(got) != "bbbb" || res.FilesTransferred != 1 {
		t.Errorf("after a same-second rewrite: destination %q, %d files transferred; want \"bbbb\", 1", got, res.FilesTransferred)
	}
}

// dropDACWrapper returns a wrapper that runs rsync as root without the capabilities that let
// root read any file, so that a mode-000 file is really unreadable; or skips with the reason.
func dropDACWrapper(t *testing.T, rsync string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return rsync // a mode-000 file is unreadable already
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testbin.SkipOrFail(t, "running as root and setpriv (util-linux) is missing: no way to make a file unreadable to rsync")
	}
	drop := []string{"--bounding-set=-dac_override,-dac_read_search"}
	if out, err := exec.Command(setpriv, append(drop, "true")...).CombinedOutput(); err != nil {
		testbin.SkipOrFail(t, "setpriv cannot drop CAP_DAC_OVERRIDE here: "+strings.TrimSpace(string(out)))
	}
	return writeScript(t, "exec "+setpriv+" "+drop[0]+" "+rsync+` "$@"`)
}

func TestRunUnreadableFiles(t *testing.T) {
	rsync := testbin.Rsync(t)
	binary := dropDACWrapper(t, rsync)
	for _, mode := range listModes {
		t.Run(mode.name, func(t *testing.T) { testUnreadableFiles(t, binary, mode) })
	}
}

func testUnreadableFiles(t *testing.T, binary string, mode listMode) {
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src, []entry{
		{path: "ok1", content: "1", mode: 0o644, uid: -1, gid: -1},
		{path: "secret", content: "s", mode: 0o000, uid: -1, gid: -1},
		{path: "dir/also secret\n\xff", content: "s", mode: 0o000, uid: -1, gid: -1},
		{path: `q"uote\#134 "x": (13)`, content: "s", mode: 0o000, uid: -1, gid: -1},
		{path: "ok2", content: "2", mode: 0o644, uid: -1, gid: -1},
	})
	res, err := Run(context.Background(), mode.apply(t, Job{Binary: binary, Source: src, Dest: dst,
		List: list("ok1", "secret", "dir/also secret\n\xff", `q"uote\#134 "x": (13)`, "ok2")}))
	mode.check(t, res.Args)
	var exitErr *ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("Run = %v, want an *ExitError", err)
	}
	if exitErr.Code != ExitPartial || !exitErr.Retryable() || exitErr.NoSpace() {
		t.Errorf("code %d retryable %v nospace %v, want 23, true, false", exitErr.Code, exitErr.Retryable(), exitErr.NoSpace())
	}
	got := append([]string(nil), exitErr.FailedPaths...)
	sort.Strings(got)
	if want := []string{"dir/also secret\n\xff", `q"uote\#134 "x": (13)`, "secret"}; !reflect.DeepEqual(got, want) {
		t.Errorf("FailedPaths = %q, want %q (stderr %q)", got, want, exitErr.StderrTail)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "partial transfer") || !strings.Contains(msg, "Permission denied") {
		t.Errorf("Error() = %q, want one line naming the code and rsync's complaint", msg)
	}
	for _, p := range []string{"ok1", "ok2"} {
		if _, err := os.Stat(filepath.Join(dst, p)); err != nil {
			t.Errorf("%s not copied beside the unreadable files: %v", p, err)
		}
	}
}

func TestRunVanishedFiles(t *testing.T) {
	rsync := testbin.Rsync(t)
	for _, mode := range listModes {
		t.Run(mode.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			makeTree(t, src, []entry{{path: "here", content: "h", mode: 0o644, uid: -1, gid: -1}})
			// Listed by the walk, deleted before rsync ran: rsync says link_stat ... ENOENT,
			// exit 23, naming SOURCE/NAME whether NAME was an argument SOURCE/./NAME or a
			// list entry.
			res, err := Run(context.Background(), mode.apply(t, Job{Binary: rsync, Source: src, Dest: dst,
				List: list("gone", "here", "gone dir/x", "#gone", "host:gone", "z*")}))
			if err != nil {
				t.Fatalf("Run = %v, want success with a warning", err)
			}
			mode.check(t, res.Args)
			want := []string{"gone", "gone dir/x", "#gone", "host:gone", "z*"}
			got := append([]string(nil), res.Vanished...)
			sort.Strings(got)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) || res.VanishedCount != len(want) || len(res.Warnings) == 0 || res.ExitCode != ExitPartial {
				t.Errorf("exit %d, vanished %q (%d), warnings %q; want 23, %q", res.ExitCode, res.Vanished, res.VanishedCount, res.Warnings, want)
			}
			if _, err := os.Stat(filepath.Join(dst, "here")); err != nil {
				t.Errorf("here not copied: %v", err)
			}
		})
	}
}

// TestRunVanishedDuringTransfer deletes a listed file after rsync has built its file list
// and before it sends the file: rsync's own "file has vanished" and exit 24, a success.
func TestRunVanishedDuringTransfer(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src, []entry{
		{path: "a-slow", content: strings.Repeat("s", 128<<10), mode: 0o644, uid: -1, gid: -1},
		{path: "z-victim", content: "v", mode: 0o644, uid: -1, gid: -1},
	})
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		// rsync sends in sorted order: z-victim waits behind the throttled a-slow.
		res, err := Run(context.Background(), Job{Binary: rsync, Args: append([]string{"--bwlimit=64"}, DefaultArgs...), Source: src, Dest: dst, List: list("a-slow", "z-victim")})
		done <- outcome{res, err}
	}()
	waitFor(t, "a-slow's temporary file", 30*time.Second, func() bool {
		entries, _ := os.ReadDir(dst)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".a-slow.") {
				return true
			}
		}
		return false
	})
	if err := os.Remove(filepath.Join(src, "z-victim")); err != nil {
		t.Fatal(err)
	}
	out := <-done
	if out.err != nil {
		t.Fatalf("Run = %v, want success with a warning", out.err)
	}
	if out.res.ExitCode != ExitVanished || !reflect.DeepEqual(out.res.Vanished, []string{"z-victim"}) || len(out.res.Warnings) == 0 {
		t.Errorf("exit %d, vanished %q, warnings %q; want 24, [z-victim], a warning", out.res.ExitCode, out.res.Vanished, out.res.Warnings)
	}
	if _, err := os.Stat(filepath.Join(dst, "a-slow")); err != nil {
		t.Errorf("a-slow not copied: %v", err)
	}
}

// TestRunExitCodes drives the classification with the real rsync where a fault can be made
// for real, and with a stand-in script for the codes that need a broken network or kernel.
func TestRunExitCodes(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name      string
		binary    string // script body; "" runs the real rsync
		args      []string
		source    string // "" is a fresh directory
		dest      string
		code      int // -100: success
		retryable bool
		noSpace   bool
		meaning   string
	}{
		{name: "unknown option", args: []string{"--no-such-option"}, code: 1, meaning: "syntax or usage error"},
		{name: "missing source", source: "/nonexistent/source", code: 3, meaning: "errors selecting input/output files"},
		{name: "destination parent missing", dest: "/nonexistent/parent/dest", code: 11, retryable: true, meaning: "error in file I/O"},
		{name: "vanished 24", binary: `echo 'file has vanished: "/x/y"' >&2; echo 'Number of regular files transferred: 3'; exit 24`, code: -100},
		{name: "disk full", binary: `echo 'rsync: [receiver] write failed on "/d/big": No space left on device (28)' >&2; exit 11`, code: 11, retryable: true, noSpace: true, meaning: "error in file I/O"},
		{name: "protocol stream", binary: "exit 12", code: 12, retryable: true, meaning: "protocol data stream"},
		{name: "timeout", binary: "exit 30", code: 30, retryable: true, meaning: "timeout in data send/receive"},
		{name: "signalled", binary: "exit 20", code: 20, retryable: true, meaning: "SIGTERM"},
		{name: "protocol incompatible", binary: "exit 2", code: 2, meaning: "protocol incompatibility"},
		{name: "client-server start", binary: "exit 5", code: 5, meaning: "client-server protocol"},
		{name: "max-delete", binary: "exit 25", code: 25, meaning: "max-delete"},
		{name: "unknown code", binary: "exit 99", code: 99, retryable: true, meaning: "unknown exit code"},
		{name: "killed", binary: "kill -KILL $$", code: ExitKilled, retryable: true, meaning: "killed by signal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			binary := rsync
			if tt.binary != "" {
				binary = writeScript(t, tt.binary)
			}
			src, dst := tt.source, tt.dest
			if src == "" {
				src = t.TempDir()
				makeTree(t, src, []entry{{path: "f", content: "x", mode: 0o644, uid: -1, gid: -1}})
			}
			if dst == "" {
				dst = t.TempDir()
			}
			res, err := Run(context.Background(), Job{Binary: binary, Args: tt.args, Source: src, Dest: dst, List: list("f")})
			if tt.code == -100 {
				if err != nil || len(res.Warnings) == 0 || res.Stats.RegularFilesTransferred != 3 {
					t.Fatalf("Run = %+v, %v; want success with warnings and stats", res, err)
				}
				return
			}
			var exitErr *ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("Run = %v, want an *ExitError", err)
			}
			if exitErr.Code != tt.code || exitErr.Retryable() != tt.retryable || exitErr.NoSpace() != tt.noSpace || Retryable(err) != tt.retryable {
				t.Errorf("code %d retryable %v nospace %v; want %d %v %v", exitErr.Code, exitErr.Retryable(), exitErr.NoSpace(), tt.code, tt.retryable, tt.noSpace)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.meaning) || strings.Contains(msg, "\n") {
				t.Errorf("Error() = %q, want one line with %q", msg, tt.meaning)
			}
			if len(exitErr.Args) == 0 || exitErr.Args[0] != binary {
				t.Errorf("Args = %q", exitErr.Args)
			}
		})
	}
}

// TestRunDestinationFull fills a real, small tmpfs.
func TestRunDestinationFull(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dst := t.TempDir(), t.TempDir()
	if err := syscall.Mount("tmpfs", dst, "tmpfs", 0, "size=64k"); err != nil {
		testbin.SkipOrFail(t, "cannot mount a small tmpfs to fill (needs root and CAP_SYS_ADMIN): "+err.Error())
	}
	t.Cleanup(func() { _ = syscall.Unmount(dst, syscall.MNT_DETACH) })
	makeTree(t, src, []entry{{path: "big", content: strings.Repeat("x", 1<<20), mode: 0o644, uid: -1, gid: -1}})
	_, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list("big")})
	var exitErr *ExitError
	if !errors.As(err, &exitErr) || !exitErr.NoSpace() || !exitErr.Retryable() {
		t.Fatalf("Run = %v, want an *ExitError with NoSpace", err)
	}
	if !strings.Contains(err.Error(), "destination full") {
		t.Errorf("Error() = %q", err)
	}
}

// processGroup returns the pids of live processes in process group pgid.
func processGroup(t *testing.T, pgid int) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		fields := strings.Fields(string(stat[i+1:])) // state ppid pgrp ...
		if len(fields) < 3 || fields[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(fields[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestRunCancel(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name   string
		binary string // script; "" is the real rsync, slowed down by --bwlimit
		args   []string
	}{
		{name: "rsync stops on SIGTERM", args: []string{"-a", "--bwlimit=1"}},
		// A program that ignores SIGTERM, and its child, are killed after the grace.
		{name: "SIGKILL after the grace", binary: `trap '' TERM; sleep 600 & wait; wait`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			binary := rsync
			if tt.binary != "" {
				binary = writeScript(t, tt.binary)
			}
			src, dst := t.TempDir(), t.TempDir()
			makeTree(t, src, []entry{{path: "big", content: strings.Repeat("x", 4<<20), mode: 0o644, uid: -1, gid: -1}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type outcome struct {
				res Result
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				res, err := Run(ctx, Job{Binary: binary, Args: tt.args, Source: src, Dest: dst, List: list("big"), KillGrace: 300 * time.Millisecond})
				done <- outcome{res, err}
			}()
			var pgid int
			waitFor(t, "the child to start", 20*time.Second, func() bool {
				pids := processesMentioning(t, dst)
				if len(pids) == 0 {
					return false
				}
				pgid, _ = syscall.Getpgid(pids[0])
				return pgid > 0 && len(processGroup(t, pgid)) >= 2 // rsync forks; the script runs sleep
			})
			cancel()
			var out outcome
			select {
			case out = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return after cancellation")
			}
			if !errors.Is(out.err, context.Canceled) || !Retryable(out.err) {
				t.Errorf("Run = %v, want an error wrapping context.Canceled", out.err)
			}
			waitFor(t, "no process left in the group", 10*time.Second, func() bool { return len(processGroup(t, pgid)) == 0 })
		})
	}
}

func TestRunBadJob(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dst := t.TempDir(), t.TempDir()
	tests := []struct {
		name  string
		job   Job
		check func(error) bool
	}{
		{"absolute path", Job{Binary: rsync, Source: src, Dest: dst, List: list("/etc/passwd")}, func(err error) bool { return errors.Is(err, ErrBadList) }},
		{"dot-dot", Job{Binary: rsync, Source: src, Dest: dst, List: list("a/../../x")}, func(err error) bool { return errors.Is(err, ErrBadList) }},
		{"refused option", Job{Binary: rsync, Args: []string{"--delete"}, Source: src, Dest: dst, List: list("x")}, func(err error) bool {
			var o *OptionError
			return errors.As(err, &o)
		}},
		{"missing rsync", Job{Binary: "/nonexistent/rsync", Source: src, Dest: dst, List: list("x")}, func(err error) bool { return errors.Is(err, ErrNotFound) }},
		{"no source", Job{Binary: rsync, Dest: dst, List: list("x")}, func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.job)
			if !tt.check(err) || Retryable(err) {
				t.Errorf("Run = %v (retryable %v)", err, Retryable(err))
			}
		})
	}
	// A job whose context is already done does not start rsync.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Job{Binary: rsync, Source: src, Dest: dst, List: list("x")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context = %v", err)
	}
	// An empty file list does not run rsync at all.
	if res, err := Run(context.Background(), Job{Binary: "/bin/false", Source: src, Dest: dst, List: list(".", "")}); err != nil || res.Args != nil {
		t.Errorf("empty list: %+v, %v", res, err)
	}
}

func TestCleanList(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    []string
		root    bool
		wantErr bool
	}{
		{"plain", list("a", "b/c"), []string{"./a", "./b/c"}, false, false},
		{"trailing slash and dot", list("a/", "b/.", "./c", "d//e", "././f"), []string{"./a", "./b", "./c", "./d/e", "./f"}, false, false},
		{"root", list(".", "./", "x"), []string{"./x"}, true, false},
		{"no final NUL", []byte("a\x00b"), []string{"./a", "./b"}, false, false},
		{"empty entries", []byte("\x00\x00a\x00"), []string{"./a"}, false, false},
		{"odd bytes kept", list("-x", "a\nb", "\xff"), []string{"./-x", "./a\nb", "./\xff"}, false, false},
		{"dots in names are fine", list("..a", "a..", "...", ".hidden"), []string{"./..a", "./a..", "./...", "./.hidden"}, false, false},
		// rsync reads a line starting with '#' or ';' as a comment, even with --from0.
		{"comment-like names", list("#top", ";semi", "#dir/inner", "d/#deep"), []string{"./#top", "./;semi", "./#dir/inner", "./d/#deep"}, false, false},
		{"comment-like after ./", list("./#top", "./;x"), []string{"./#top", "./;x"}, false, false},
		{"absolute", list("/a"), nil, false, true},
		{"dot-dot", list("a/.."), nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, root, err := cleanList(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("cleanList error = %v", err)
			}
			if err != nil {
				return
			}
			var paths []string
			for _, p := range strings.Split(string(got), "\x00") {
				if p != "" {
					paths = append(paths, p)
				}
			}
			if !reflect.DeepEqual(paths, tt.want) || root != tt.root {
				t.Errorf("cleanList = %q, root %v; want %q, %v", paths, root, tt.want, tt.root)
			}
		})
	}
}

// TestRunNeverWritesOutsideDest: a symlink in the destination where the source now has a
// directory (the tree changed between partitions) is replaced, not written through, and a
// symlink pointing out of the source is copied as a link, not followed.
func TestRunNeverWritesOutsideDest(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
	makeTree(t, src, []entry{
		{path: "d/f", content: "new", mode: 0o644, uid: -1, gid: -1},
		{path: "escape", mode: os.ModeSymlink, content: outside, uid: -1, gid: -1},
	})
	if err := os.Symlink(outside, filepath.Join(dst, "d")); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list("d/f", "escape")}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) != 0 {
		t.Errorf("something was written outside the destination: %v %v", entries, err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "escape")); err != nil || target != outside {
		t.Errorf("escape = %q, %v; want a symlink to %s", target, err, outside)
	}
	if info, err := os.Lstat(filepath.Join(dst, "d")); err != nil || !info.IsDir() {
		t.Errorf("d is not a real directory: %v %v", info, err)
	}
}

// killedParentEnv tells the test binary, re-run as a stand-in worker, where to copy.
const killedParentEnv = "RSYNCEXEC_KILLED_PARENT_DIRS"

// TestRunDiesWithItsParent SIGKILLs a process in the middle of Run (a worker killed by the
// kubelet or the OOM killer) and checks that its rsync does not go on copying.
func TestRunDiesWithItsParent(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src, []entry{{path: "big", content: strings.Repeat("x", 4<<20), mode: 0o644, uid: -1, gid: -1}})
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledParentHelper$")
	cmd.Env = append(os.Environ(), killedParentEnv+"="+rsync+"\n"+src+"\n"+dst)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // whatever happened, leave no copier behind
		for _, pid := range processesMentioning(t, dst) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	waitFor(t, "rsync to start", 20*time.Second, func() bool { return len(processesMentioning(t, dst)) >= 2 })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, "rsync to die with its parent", 10*time.Second, func() bool { return len(processesMentioning(t, dst)) == 0 })
}

// TestKilledParentHelper is TestRunDiesWithItsParent's stand-in worker; on its own it has
// nothing to do.
func TestKilledParentHelper(t *testing.T) {
	dirs := strings.Split(os.Getenv(killedParentEnv), "\n")
	if len(dirs) != 3 {
		return
	}
	_, err := Run(context.Background(), Job{Binary: dirs[0], Args: []string{"-a", "--bwlimit=1"}, Source: dirs[1], Dest: dirs[2], List: list("big")})
	t.Fatalf("Run returned before being killed: %v", err)
}

func TestRsyncEnv(t *testing.T) {
	got := rsyncEnv([]string{"PATH=/bin", "KRSYNC_TOKEN=secret", "LC_ALL=de_DE.UTF-8", "HOME=/root"})
	want := []string{"PATH=/bin", "LC_ALL=de_DE.UTF-8", "HOME=/root", "LC_ALL=C"} // the last LC_ALL wins (os/exec)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rsyncEnv = %q, want %q", got, want)
	}
}
