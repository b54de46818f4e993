package testbin

import (
	"os/exec"
	"testing"
)

func TestProgramFindsWhatLookPathFinds(t *testing.T) {
	want, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	if got := Program(t, "sh"); got != want {
		t.Fatalf("Program(sh) = %q; want %q", got, want)
	}
}

func TestDebianPackage(t *testing.T) {
	for _, tc := range []struct{ program, pkg string }{{"rsync", "rsync"}, {"fpart", "fpart"}, {"fpsync", "fpart"}} {
		if got := debianPackage(tc.program); got != tc.pkg {
			t.Errorf("debianPackage(%q) = %q; want %q", tc.program, got, tc.pkg)
		}
	}
}
