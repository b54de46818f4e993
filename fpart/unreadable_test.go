package fpart_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/internal/testing/testbin"
)

// unreadableResult is what the walk of a tree with unreadable directories produced.
type unreadableResult struct {
	Lines  []fpartLine
	Errors []string // relative paths given to Handler.Error
	Dirs   []string
	Count  int64 // Summary.Errors
}

func (l fpartLine) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{l.part, l.size, l.path})
}

func (l *fpartLine) UnmarshalJSON(b []byte) error {
	var v []any
	if err := json.Unmarshal(b, &v); err != nil || len(v) != 3 {
		return err
	}
	l.part, l.size, l.path = int(v[0].(float64)), int64(v[1].(float64)), v[2].(string)
	return nil
}

// TestUnreadableDirs: an unreadable directory is reported (path and error) and counted,
// the walk goes on, -zz packs it as an empty directory like fpart, and an excluded
// unreadable directory is never opened. Root reads every directory, so as root the walk
// runs in a child process as nobody (setpriv); without root or setpriv it skips.
func TestUnreadableDirs(t *testing.T) {
	base, err := os.MkdirTemp("", "fpart-unreadable-")
	mustDo(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	mustDo(t, os.Chmod(base, 0o755))
	root := filepath.Join(base, "t")
	for _, d := range []string{"a", "locked/inner", "b/.snapshot-1", "c"} {
		mustDo(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for _, f := range []string{"a/f1", "locked/secret", "b/f2", "b/.snapshot-1/old", "c/f3"} {
		mustDo(t, os.WriteFile(filepath.Join(root, f), []byte("12345"), 0o644))
	}
	mustDo(t, os.Chmod(filepath.Join(root, "locked"), 0))
	mustDo(t, os.Chmod(filepath.Join(root, "b/.snapshot-1"), 0))

	tests := []struct {
		name   string
		args   string
		locked bool // "t/locked" is packed as an entry
	}{
		{name: "files only", args: "-L -f 2 -x .snapshot*"},
		{name: "unreadable as empty", args: "-L -f 2 -zz -x .snapshot*", locked: true},
		{name: "chart default", args: "-L -f 100 -zz -x .zfs -x .snapshot* -x .ckpt", locked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := walkUnprivileged(t, base, tt.args)
			if !reflect.DeepEqual(got.Errors, []string{"locked"}) || got.Count != 1 {
				t.Errorf("errors %q (count %d), want only %q", got.Errors, got.Count, "locked")
			}
			for _, d := range got.Dirs {
				if strings.Contains(d, ".snapshot") {
					t.Errorf("Dir(%q): an excluded directory was entered", d)
				}
			}
			set := entrySet(t, got.Lines, "krsync")
			if _, ok := set["t/locked"]; ok != tt.locked {
				t.Errorf("t/locked packed = %v, want %v", ok, tt.locked)
			}
			for _, f := range []string{"t/a/f1", "t/b/f2", "t/c/f3"} {
				if _, ok := set[f]; !ok {
					t.Errorf("%s missing: the walk stopped at the unreadable directory", f)
				}
			}
			if want := fpartUnprivileged(t, base, tt.args); want != nil && !reflect.DeepEqual(got.Lines, want) {
				t.Errorf("lines differ from fpart's as the same user:\n got %v\nwant %v", got.Lines, want)
			}
		})
	}
}

// walkUnprivileged walks base/t with args as a user root is not, and returns the result.
func walkUnprivileged(t *testing.T, base, args string) unreadableResult {
	t.Helper()
	if os.Geteuid() != 0 {
		return walkUnreadable(t, base, args)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("running as root and setpriv (util-linux) is missing: cannot make a directory unreadable: %v", err)
	}
	// The test binary may sit in a directory nobody cannot enter: copy it next to the tree.
	self, err := os.Executable()
	mustDo(t, err)
	bin := filepath.Join(base, "fpart.test")
	if _, err := os.Stat(bin); err != nil {
		copyFile(t, self, bin)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		bin, "-test.run=^TestUnreadableChild$", "-test.v")
	cmd.Env = append(os.Environ(), "FPART_UNREADABLE_BASE="+base, "FPART_UNREADABLE_ARGS="+args)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child as nobody: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	_, payload, ok := strings.Cut(stdout.String(), "RESULT:")
	if !ok {
		t.Fatalf("child printed no result:\n%s", stdout.String())
	}
	payload, _, _ = strings.Cut(payload, "\n")
	var res unreadableResult
	mustDo(t, json.Unmarshal([]byte(payload), &res))
	return res
}

// TestUnreadableChild is the child half of TestUnreadableDirs; alone it does nothing.
func TestUnreadableChild(t *testing.T) {
	base := os.Getenv("FPART_UNREADABLE_BASE")
	if base == "" {
		t.Skip("only runs as the child process of TestUnreadableDirs")
	}
	res := walkUnreadable(t, base, os.Getenv("FPART_UNREADABLE_ARGS"))
	out, err := json.Marshal(res)
	mustDo(t, err)
	os.Stdout.WriteString("RESULT:" + string(out) + "\n")
}

func walkUnreadable(t *testing.T, base, args string) unreadableResult {
	t.Helper()
	opts, _, err := fpart.ParseArgs(strings.Fields(args))
	mustDo(t, err)
	t.Chdir(base)
	var res unreadableResult
	var parts []fpart.Partition
	sum, err := fpart.Walk(context.Background(), "t", opts, fpart.Handler{
		Partition: func(p fpart.Partition) error { parts = append(parts, p); return nil },
		Dir:       func(rel string) error { res.Dirs = append(res.Dirs, rel); return nil },
		Error:     func(rel string, err error) { res.Errors = append(res.Errors, rel) },
	})
	mustDo(t, err)
	res.Lines, res.Count = ourLines(parts, "t"), sum.Errors
	return res
}

// fpartUnprivileged runs the real fpart as the same unprivileged user, or returns nil
// when fpart is missing (the other checks still run).
func fpartUnprivileged(t *testing.T, base, args string) []fpartLine {
	t.Helper()
	if _, err := exec.LookPath("fpart"); err != nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return runFpart(t, base, append(strings.Fields(args), "t")...)
	}
	setpriv, err := exec.LookPath("setpriv")
	mustDo(t, err)
	fp := testbin.Fpart(t)
	cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--", fp},
		append(strings.Fields(args), "t")...)...)
	cmd.Dir = base
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fpart as nobody: %v", err)
	}
	var lines []fpartLine
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if l == "" {
			continue
		}
		var line fpartLine
		fields := strings.SplitN(l, "\t", 3)
		mustDo(t, json.Unmarshal([]byte("["+fields[0]+","+fields[1]+","+quoteJSON(fields[2])+"]"), &line))
		lines = append(lines, line)
	}
	return lines
}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	mustDo(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	mustDo(t, err)
	_, err = io.Copy(out, in)
	mustDo(t, err)
	mustDo(t, out.Close())
}
