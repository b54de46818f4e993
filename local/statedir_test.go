package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
