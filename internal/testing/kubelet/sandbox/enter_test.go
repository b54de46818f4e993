package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// TestResolveIn: mount targets follow the image's symlinks as the container sees them, and
// never leave the root, whatever a link says.
func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"run", "usr/bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"var/run": "/run",         // absolute, as Debian has it
		"bin":     "usr/bin",      // relative
		"etc/up":  "../../../../", // climbs above the root
		"etc/abs": "/../../etc",   // absolute and climbing
		"loop":    "loop",         // a cycle
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path, want string
		fails      bool
	}{
		{path: "/source", want: "/source"},
		{path: "/var/run/secrets/kubernetes.io/serviceaccount", want: "/run/secrets/kubernetes.io/serviceaccount"},
		{path: "/bin/krsync", want: "/usr/bin/krsync"},
		{path: "/etc/up/source", want: "/source"},
		{path: "/etc/abs/krsync", want: "/etc/krsync"},
		{path: "/../../tmp", want: "/tmp"},
		{path: "/loop/x", fails: true},
	}
	for _, tc := range tests {
		got, err := resolveIn(root, tc.path)
		if tc.fails {
			if err == nil {
				t.Errorf("resolveIn(%q) = %q, want an error", tc.path, got)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("resolveIn(%q) = %q, %v; want %q", tc.path, got, err, filepath.Join(root, tc.want))
		}
	}
}

func TestCapabilityMask(t *testing.T) {
	tests := []struct {
		names []string
		want  uint64
		fails bool
	}{
		{names: nil, want: 0},
		{names: []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD"}, want: 0x800001b},
		{names: []string{"cap_chown", "CAP_SYS_ADMIN"}, want: 1 | 1<<21},
		{names: []string{"NO_SUCH_CAP"}, fails: true},
	}
	for _, tc := range tests {
		got, err := CapabilityMask(tc.names)
		if (err != nil) != tc.fails || got != tc.want {
			t.Errorf("CapabilityMask(%v) = %#x, %v; want %#x, fails %v", tc.names, got, err, tc.want, tc.fails)
		}
	}
}
