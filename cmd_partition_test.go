package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runPartition runs `krsync partition args...` in-process and returns exit code and output.
func runPartition(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"--log-level=error", "partition"}, args...),
		Streams{Stdout: &stdout, Stderr: &stderr})
	return code, stdout.String(), stderr.String()
}

func TestPartitionCommandBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // in the one-line error
	}{
		{"missing source", []string{"-f", "10", filepath.Join(dir, "nope")}, "no such directory"},
		{"file as source", []string{"-f", "10", file}, "not a directory"},
		{"unknown option", []string{"-Q", "-f", "10", dir}, "unknown option -Q"},
		{"zero files", []string{"-f", "0", dir}, "-f"},
		{"no mode", []string{dir}, "-n, -f or -s"},
		{"no directory", []string{"-f", "3"}, "directory"},
		{"-n with -f", []string{"-n", "2", "-f", "3", dir}, "-n cannot"},
		{"-n with -L", []string{"-n", "2", "-L", dir}, "-n cannot"},
		{"-n with -s", []string{"-n", "2", "-s", "1M", dir}, "-n cannot"},
		{"bad size", []string{"-s", "lots", dir}, "-s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runPartition(t, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q: want one line containing %q", stderr, tt.want)
			}
		})
	}
}

func TestPartitionCommandOutput(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "t")
	for _, d := range []string{"a", "empty", ".zfs", "b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, size := range map[string]int{"a/one": 3, "a/two": 5, ".zfs/snap": 1, "b/new\nline": 2} {
		if err := os.WriteFile(filepath.Join(root, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)

	code, stdout, stderr := runPartition(t, "-zz", "-x", ".zfs", "-x", ".snapshot*", "-x", ".ckpt", "-L", "-f", "2", "-0", "-e", "t")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	records := strings.Split(strings.TrimSuffix(stdout, "\x00"), "\x00")
	got := map[string]string{}
	for _, r := range records {
		fields := strings.SplitN(r, "\t", 3)
		if len(fields) != 3 {
			t.Fatalf("record %q: want part<TAB>size<TAB>path", r)
		}
		got[fields[2]] = fields[1]
	}
	want := map[string]string{"t/a/one": "3", "t/a/two": "5", "t/empty/": "0", "t/b/new\nline": "2"}
	if len(got) != len(want) {
		t.Errorf("entries %q, want %q", got, want)
	}
	for path, size := range want {
		if got[path] != size {
			t.Errorf("%q: size %q, want %q (all: %q)", path, got[path], size, got)
		}
	}
	if !strings.Contains(stderr, "Part #1: size = ") || !strings.Contains(stderr, "Part #2: size = ") {
		t.Errorf("stderr %q: want fpart's per-partition summary", stderr)
	}

	// -o PREFIX writes PREFIX.1, PREFIX.2 ... as fpart numbers them.
	prefix := filepath.Join(dir, "parts")
	code, stdout, stderr = runPartition(t, "-f", "2", "-o", prefix, "t")
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	var all []string
	for n := 1; ; n++ {
		data, err := os.ReadFile(prefix + "." + string(rune('0'+n)))
		if err != nil {
			break
		}
		all = append(all, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")...)
	}
	if len(all) != 5 { // "new\nline" spans two lines without -0, as with fpart
		t.Errorf("partition files hold %q", all)
	}

	code, stdout, _ = runPartition(t, "-h")
	if code != 0 || !strings.Contains(stdout, "usage: krsync partition") {
		t.Errorf("-h: exit %d, stdout %q", code, stdout)
	}
}
