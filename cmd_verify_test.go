package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/verify"
)

// runVerifyBinary runs the built krsync verify as a user would, and returns its exit code,
// stdout and stderr.
func runVerifyBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(testbin.Krsync(t), append([]string{"--log-format=json", "verify"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errorsAs(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("run krsync verify: %v", err)
	return 0, "", ""
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*target = e
	return ok
}

// verifyPair writes a small tree with hostile names and copies it with rsync -aH.
func verifyPair(t *testing.T) (src, dest string) {
	t.Helper()
	rsync := testbin.Program(t, "rsync")
	dir := t.TempDir()
	src, dest = filepath.Join(dir, "src"), filepath.Join(dir, "dest")
	for _, rel := range []string{"a", "dir\nwith newline/b\xff", "-dash/c", ".hidden/d", "x/y/z"} {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("target\xfe\nwith newline", filepath.Join(src, "x", "link")); err != nil {
		t.Fatal(err)
	}
	// Another second than now: rsync leaves the mtimes of directories and symlinks alone
	// when they differ from the copy's below the second.
	old := time.Unix(1.5e9, 42)
	ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, "x", "link"), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"dir\nwith newline", "-dash", ".hidden", "x/y", "x", "."} {
		if err := os.Chtimes(filepath.Join(src, d), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(rsync, "-aH", "--numeric-ids", src+"/", dest+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	return src, dest
}

func TestVerifyCommandBadInput(t *testing.T) {
	src, dest := verifyPair(t)
	file := filepath.Join(src, "a")
	link := filepath.Join(t.TempDir(), "link-to-src")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	relSrc, err1 := filepath.Rel(cwd, src)
	relDest, err2 := filepath.Rel(cwd, dest)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // in the one line of stderr
	}{
		{"no dest flag", []string{"--source", src}, "--dest"},
		{"missing source", []string{"--source", src + "-nope", "--dest", dest}, "--source " + src + "-nope: no such directory"},
		{"missing dest", []string{"--source", src, "--dest", dest + "-nope"}, "--dest " + dest + "-nope: no such directory"},
		{"source is a file", []string{"--source", file, "--dest", dest}, "not a directory"},
		{"same directory", []string{"--source", src, "--dest", src}, "the same directory"},
		{"same directory through a symlink", []string{"--source", link, "--dest", src}, "the same directory"},
		{"no workers", []string{"--source", src, "--dest", dest, "--workers", "0"}, "--workers 0"},
		{"report inside dest", []string{"--source", src, "--dest", dest, "--report", filepath.Join(dest, "r.jsonl")}, "inside --dest"},
		{"report inside the source, relative paths", []string{"--source", relSrc, "--dest", relDest, "--report", filepath.Join(relSrc, "r.jsonl")}, "inside --source"},
		{"report in a missing directory", []string{"--source", src, "--dest", dest, "--report", filepath.Join(dest+"-nope", "r")}, "--report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runVerifyBinary(t, tt.args...)
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Errorf("exit %d, stderr %q (stdout %q); want exit 2 and one line with %q", code, stderr, stdout, tt.want)
			}
		})
	}
	for _, root := range []string{src, dest} {
		if _, err := os.Stat(filepath.Join(root, "r.jsonl")); err == nil {
			t.Errorf("a refused --report was created in %s", root)
		}
	}
}

func TestVerifyCommandEqual(t *testing.T) {
	src, dest := verifyPair(t)
	code, _, stderr := runVerifyBinary(t, "--source", src, "--dest", dest, "--checksum")
	if code != 0 {
		t.Fatalf("exit %d on an equal pair:\n%s", code, stderr)
	}
	// The destination may lie inside the source: verify only reads; exclude it there.
	inner := filepath.Join(src, "inner-copy")
	if err := os.Rename(dest, inner); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(src, time.Unix(1.5e9, 42), time.Unix(1.5e9, 42)); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runVerifyBinary(t, "--source", src, "--dest", inner, "--exclude", "inner-copy"); code != 0 {
		t.Fatalf("exit %d with the destination inside the source, excluded:\n%s", code, stderr)
	}
}

func TestVerifyCommandReportsEveryDifference(t *testing.T) {
	src, dest := verifyPair(t)
	plant := func(f func() error) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	// Each change keeps its parent's mtime, so it is exactly one difference.
	keep := func(dir string, f func() error) func() error {
		return func() error {
			info, err := os.Stat(dir)
			if err != nil {
				return err
			}
			if err := f(); err != nil {
				return err
			}
			return os.Chtimes(dir, info.ModTime(), info.ModTime())
		}
	}
	d := func(rel string) string { return filepath.Join(dest, rel) }
	plant(keep(d("dir\nwith newline"), func() error { return os.WriteFile(d("dir\nwith newline/extra\xff\n"), nil, 0o644) }))
	plant(keep(d("-dash"), func() error { return os.Remove(d("-dash/c")) }))
	plant(func() error { return os.Chtimes(d("dir\nwith newline/b\xff"), time.Unix(1, 0), time.Unix(1, 0)) })
	plant(keep(d("x"), func() error {
		if err := os.Remove(d("x/link")); err != nil {
			return err
		}
		return os.Symlink("other\xff", d("x/link"))
	}))
	// The new symlink gets the old one's mtime: only its target differs.
	plant(func() error {
		old := time.Unix(1.5e9, 42).UnixNano()
		ts := []unix.Timespec{unix.NsecToTimespec(old), unix.NsecToTimespec(old)}
		return unix.UtimesNanoAt(unix.AT_FDCWD, d("x/link"), ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	want := []string{"extra dir\nwith newline/extra\xff\n", "missing -dash/c", "mtime dir\nwith newline/b\xff", "target x/link"}

	report := filepath.Join(t.TempDir(), "report.jsonl")
	code, _, stderr := runVerifyBinary(t, "--source", src, "--dest", dest, "--report", report, "--show", "1")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, stderr)
	}
	last := lastNonEmptyLine(stderr)
	if !strings.Contains(last, "4 differences") || strings.Contains(last, "\n") {
		t.Errorf("last line %q should count 4 differences", last)
	}
	if !strings.Contains(stderr, "and 3 more differences") {
		t.Errorf("the log should say how many differences it did not list:\n%s", stderr)
	}
	if n := strings.Count(stderr, `"message":"difference"`); n != 1 {
		t.Errorf("--show 1 listed %d differences in the log", n)
	}

	f, err := os.Open(report)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d verify.Difference
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("report line %q: %v", sc.Text(), err)
		}
		got = append(got, string(d.Kind)+" "+d.Path)
		if d.Kind == verify.Target && (d.Source != "target\xfe\nwith newline" || d.Dest != "other\xff") {
			t.Errorf("symlink targets did not survive the report: %q, %q", d.Source, d.Dest)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("report holds %q, want %q", got, want)
	}
}
