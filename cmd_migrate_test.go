package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateCommandBadInput: bad flags are one line on stderr and exit 2, before any
// connection to a cluster (the kubeconfig named here does not exist); a kubeconfig that does
// not exist is one line and exit 1.
func TestMigrateCommandBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	base := []string{"migrate", "--kubeconfig", missing, "-n", "shop"}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no destination", []string{"--source-pvc", "data"}, 2, "give --dest-pvc NEW"},
		{"destination is the source", []string{"--source-pvc", "data", "--dest-pvc", "data"}, 2, "is the source claim"},
		{"bad claim name", []string{"--source-pvc", "Data_1", "--dest-pvc", "new"}, 2, `--source-pvc "Data_1": not a valid claim name`},
		{"size without class", []string{"--source-pvc", "data", "--dest-pvc", "new", "--dest-size", "20Gi"}, 2, "give --dest-storage-class too"},
		{"bad size", []string{"--source-pvc", "data", "--dest-storage-class", "fast", "--dest-size", "lots"}, 2, `--dest-size "lots"`},
		{"rollback and dry run", []string{"--source-pvc", "data", "--dest-pvc", "new", "--rollback", "--dry-run"}, 2, "give one of them"},
		{"unsafe rsync option", []string{"--source-pvc", "data", "--dest-pvc", "new", "--rsync-opts", "--delete"}, 2, "--rsync-opts"},
		{"bad timeout", []string{"--source-pvc", "data", "--dest-pvc", "new", "--timeout", "0s"}, 2, "--timeout"},
		{"bad parallelism", []string{"--source-pvc", "data", "--dest-pvc", "new", "--parallelism", "0"}, 2, "--parallelism"},
		{"no cluster", []string{"--source-pvc", "data", "--dest-pvc", "new"}, 1, "--kubeconfig " + missing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append(append([]string(nil), base...), tc.args...), Streams{Stdout: &out, Stderr: &errb})
			msg := errb.String()
			if code != tc.code || !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit %d and one line holding %q", code, msg, tc.code, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("krsync migrate created the kubeconfig %s", missing)
	}
}
