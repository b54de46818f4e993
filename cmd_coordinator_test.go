package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// runCoordinator runs `krsync coordinator args...` in-process.
func runCoordinator(ctx context.Context, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(ctx, append([]string{"--log-level=error", "coordinator"}, args...), Streams{Stdout: &stdout, Stderr: &stderr})
	return code, stdout.String(), stderr.String()
}

func TestCoordinatorCommandBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	empty := filepath.Join(dir, "empty-token")
	token := filepath.Join(dir, "token")
	for f, content := range map[string]string{file: "", empty: "", token: "secret\n"} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing source", []string{"--source", filepath.Join(dir, "nope")}, "does not exist"},
		{"file as source", []string{"--source", file}, "not a directory"},
		{"bad fpart option", []string{"--source", dir, "--fpart-opts", "-Q"}, "--fpart-opts"},
		{"fpart path", []string{"--source", dir, "--fpart-opts", "-f 10 /etc"}, "--fpart-opts"},
		{"zero attempts", []string{"--source", dir, "--max-attempts", "0"}, "--max-attempts"},
		{"missing token file", []string{"--source", dir, "--token-file", filepath.Join(dir, "nope")}, "--token-file"},
		{"empty token file", []string{"--source", dir, "--token-file", empty}, "empty"},
		{"half TLS", []string{"--source", dir, "--token-file", token, "--tls-cert", file}, "TLS needs both"},
		{"bad TLS files", []string{"--source", dir, "--token-file", token, "--tls-cert", file, "--tls-key", file}, "TLS certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			termLog := filepath.Join(t.TempDir(), "termination-log")
			code, stdout, stderr := runCoordinator(context.Background(), append(tt.args, "--termination-log", termLog)...)
			if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and one line containing %q", code, stdout, stderr, tt.want)
			}
			// In a Pod, the reason reaches the Pod's status without its logs.
			if msg, err := os.ReadFile(termLog); err != nil || !strings.Contains(string(msg), tt.want) {
				t.Errorf("termination message %q (%v); want it to say %q", msg, err, tt.want)
			}
		})
	}
}

func TestCoordinatorCommandServesUntilDone(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("KRSYNC_TOKEN", "cmd-test-token")
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runCoordinator(context.Background(), "--source", src, "--listen", addr, "--files-per-partition", "2")
		done <- result{code, stdout, stderr}
	}()
	cl, err := leaseapi.NewClient("http://"+addr, leaseapi.ClientOptions{Token: "cmd-test-token", GiveUpAfter: 30 * time.Second, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var files int
	for {
		resp, err := cl.Lease(context.Background(), "w", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if resp.State == leaseapi.LeaseDone {
			break
		}
		if resp.State != leaseapi.LeaseGranted {
			continue
		}
		l := resp.Lease
		if l.Kind == leaseapi.KindFiles {
			files += len(l.Paths())
		}
		if err := cl.Complete(context.Background(), l.Partition, l.Token, leaseapi.TransferStats{FilesTransferred: l.Entries}); err != nil {
			t.Fatal(err)
		}
	}
	r := <-done
	if r.code != 0 || files != 3 || !strings.Contains(r.stdout, "partitions done, 0 failed; 3 of 3 entries") {
		t.Fatalf("exit %d, %d files leased, stdout %q, stderr %q", r.code, files, r.stdout, r.stderr)
	}
}

// TestRequireEmptyDest: --require-empty-dest lets a coordinator start on an empty
// destination, one holding only an empty lost+found, or one holding this run's journal (a
// restart); anything else is refused, naming what is there.
func TestRequireEmptyDest(t *testing.T) {
	tests := []struct {
		name   string
		make   []string // paths below dest; a trailing / makes a directory
		ok     bool
		naming string
	}{
		{"empty", nil, true, ""},
		{"an empty lost+found", []string{"lost+found/"}, true, ""},
		{"lost+found with a file", []string{"lost+found/", "lost+found/#123"}, false, "lost+found"},
		{"a file at the top", []string{"#data"}, false, "#data"},
		{"an empty directory", []string{"old/"}, false, "old"},
		{"this run's journal and its copy (a restart)", []string{".krsync-state/", ".krsync-state/journal.db", "copied"}, true, ""},
		{"a state directory without a journal", []string{".krsync-state/", "copied"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			for _, p := range tt.make {
				path := filepath.Join(dest, p)
				if strings.HasSuffix(p, "/") {
					if err := os.Mkdir(path, 0o755); err != nil {
						t.Fatal(err)
					}
				} else if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := requireEmptyDest(dest, filepath.Join(dest, ".krsync-state"))
			if tt.ok != (err == nil) || (err != nil && (!strings.Contains(err.Error(), kube.DestNotEmpty) || !strings.Contains(err.Error(), tt.naming))) {
				t.Errorf("requireEmptyDest = %v; want ok %v, naming %q", err, tt.ok, tt.naming)
			}
		})
	}
}
