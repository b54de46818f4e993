package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/krsync/krsync/kube"
)

// TestManifestsCommandDefaultsEqualManifestsDir: `krsync manifests` with the published token
// prints exactly the files of manifests/ (kustomization aside), in kustomization order.
func TestManifestsCommandDefaultsEqualManifestsDir(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"manifests", "--token", kube.PublishedToken}, Streams{Stdout: &out, Stderr: &errb})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	files, err := kube.Render(kube.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for _, f := range files {
		if f.Name == kube.Kustomization {
			continue
		}
		data, err := os.ReadFile(filepath.Join("manifests", f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if want.Len() > 0 {
			want.WriteString("---\n")
		}
		want.Write(data)
	}
	if !bytes.Equal(out.Bytes(), want.Bytes()) {
		t.Error("krsync manifests output differs from manifests/")
	}
}

// TestManifestsCommandMakesRandomToken: without --token each run writes a new random token.
func TestManifestsCommandMakesRandomToken(t *testing.T) {
	tokens := map[string]bool{}
	for range 2 {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"manifests", "-n", "prod"}, Streams{Stdout: &out, Stderr: &errb}); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		objs, err := kube.Decode(out.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		m, err := kube.ParseManifests(objs)
		if err != nil {
			t.Fatal(err)
		}
		tok := m.Secret.StringData[kube.TokenSecretKey]
		if tok == kube.PublishedToken || len(tok) < 20 {
			t.Errorf("token %q: want a fresh random one", tok)
		}
		tokens[tok] = true
	}
	if len(tokens) != 2 {
		t.Error("two runs wrote the same token")
	}
}

func TestManifestsCommandRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad claim", []string{"--source-pvc", "Bad_Name"}, "--source-pvc"},
		{"zero parallelism", []string{"--parallelism", "0"}, "--parallelism"},
		{"unsafe rsync option", []string{"--rsync-opts", "--archive --delete"}, "--rsync-opts"},
		{"bad fpart option", []string{"--fpart-opts", "-f 0"}, "--fpart-opts"},
		{"dry run without mirror", []string{"--dry-run"}, "--mirror"},
		{"bad run name", []string{"--name", "Nightly_Run"}, "--name"},
		{"subpath leaving the claim", []string{"--source-subpath", "a/../../b"}, "--source-subpath"},
		{"absolute subpath", []string{"--dest-subpath", "/data"}, "--dest-subpath"},
		{"one claim, the destination inside the source", []string{"--source-pvc", "data", "--dest-pvc", "data", "--dest-subpath", "copy"}, "overlap"},
		{"one claim, the source inside the destination", []string{"--source-pvc", "data", "--dest-pvc", "data", "--source-subpath", "old/x", "--dest-subpath", "old"}, "overlap"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"manifests"}, tc.args...), Streams{Stdout: &out, Stderr: &errb})
			if code != 2 || !strings.Contains(errb.String(), tc.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
				t.Errorf("exit %d, stderr %q: want exit 2 and one line naming %s", code, errb.String(), tc.want)
			}
		})
	}
}
