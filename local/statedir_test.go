package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/internal/testing/testbin"
)

func TestChooseStateDir(t *testing.T) {
	root := t.TempDir()
	src, dest := filepath.Join(root, "src"), filepath.Join(root, "dest")
	for _, d := range []string{src, dest} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, flag, xdg string
		wantUnder       string
		wantErr         string
	}{
		{"default under XDG_STATE_HOME", "", filepath.Join(root, "state"), filepath.Join(root, "state", "krsync"), ""},
		{"XDG_STATE_HOME inside the source falls back", "", filepath.Join(src, ".state"), os.TempDir(), ""},
		{"explicit", filepath.Join(root, "mine"), "", filepath.Join(root, "mine"), ""},
		{"explicit inside the source", filepath.Join(src, "state"), "", "", "inside the source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_STATE_HOME", tt.xdg)
			dir, err := chooseStateDir(tt.flag, src, dest)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("chooseStateDir = %s, %v; want an error with %q", dir, err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.HasPrefix(dir, tt.wantUnder) {
				t.Fatalf("chooseStateDir = %s, %v; want a directory under %s", dir, err, tt.wantUnder)
			}
		})
	}
	// The default is stable for one pair, and differs between pairs.
	t.Setenv("XDG_STATE_HOME", filepath.Join(root, "state"))
	a1, _ := chooseStateDir("", src, dest)
	a2, _ := chooseStateDir("", src, dest)
	b, _ := chooseStateDir("", src, dest+"2")
	if a1 != a2 || a1 == b {
		t.Errorf("default state dirs %s, %s, %s: want one per source and destination pair", a1, a2, b)
	}
}

// TestRunForgetsOnlyWhatKrsyncCreated runs whole copies and looks at what is left of the
// state directory: the coordinator, its one owner, removes the journal after a run that
// ended, and the directory when krsync created it; a directory the user made stays, with
// whatever the user put there.
func TestRunForgetsOnlyWhatKrsyncCreated(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name string
		// stateDir returns the --state-dir (empty: the default) and prepares it.
		stateDir  func(t *testing.T, root string) string
		wantDir   bool     // the state directory is still there
		wantFiles []string // and holds these
	}{
		{"default", func(t *testing.T, root string) string { return "" }, false, nil},
		{"chosen, missing", func(t *testing.T, root string) string { return filepath.Join(root, "new", "state") }, false, nil},
		{"chosen, made by the user", func(t *testing.T, root string) string {
			dir := filepath.Join(root, "mine")
			mkdirs(t, dir)
			return dir
		}, true, nil},
		{"chosen, holding a user's file", func(t *testing.T, root string) string {
			dir := filepath.Join(root, "mine")
			mkdirs(t, dir)
			if err := os.WriteFile(filepath.Join(dir, "notes"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, true, []string{"notes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			src, dest := filepath.Join(root, "src"), filepath.Join(root, "dest")
			mkdirs(t, filepath.Join(src, "a"))
			if err := os.WriteFile(filepath.Join(src, "a", "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("XDG_STATE_HOME", filepath.Join(root, "xdg"))
			res, err := Run(context.Background(), Config{
				Source: src, Dest: dest, Workers: 2, Rsync: rsync, StateDir: tt.stateDir(t, root),
				LeaseTTL: time.Minute, MaxAttempts: 1,
			}, zerolog.Nop())
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			entries, err := os.ReadDir(res.StateDir)
			if gotDir := err == nil; gotDir != tt.wantDir {
				t.Fatalf("state directory %s left: %v (%v), want %v", res.StateDir, gotDir, err, tt.wantDir)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			if !slices.Equal(got, tt.wantFiles) {
				t.Errorf("state directory holds %q, want %q", got, tt.wantFiles)
			}
		})
	}
}

func mkdirs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestCheckStateDir(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, wantErr string
	}{
		{"existing", root, ""},
		{"missing below a directory", filepath.Join(root, "a", "b"), ""},
		{"below a file", filepath.Join(file, "state"), "is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkStateDir(tt.dir)
			if (tt.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkStateDir(%s) = %v, want %q", tt.dir, err, tt.wantErr)
			}
		})
	}
}
