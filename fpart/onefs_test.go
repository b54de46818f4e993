package fpart_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/internal/testing/testbin"
)

// TestOneFileSystem mounts a tmpfs inside the tree: with -b the walk does not enter it
// (fpart packs the mount point as an empty directory with -z), without -b it does; the
// lines are fpart's in both cases. Mounting needs root (CAP_SYS_ADMIN); else it skips.
func TestOneFileSystem(t *testing.T) {
	testbin.Fpart(t)
	base := t.TempDir()
	root := filepath.Join(base, "t")
	mnt := filepath.Join(root, "mnt")
	mustDo(t, os.MkdirAll(mnt, 0o755))
	mustDo(t, os.MkdirAll(filepath.Join(root, "local"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(root, "local/f"), []byte("abc"), 0o644))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "krsync-test", mnt).CombinedOutput(); err != nil {
		// Not a missing tool but a missing privilege (CAP_SYS_ADMIN), even as root in some
		// containers: skip with the reason, also under CI.
		t.Skipf("cannot mount a tmpfs to cross (needs CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	mustDo(t, os.MkdirAll(filepath.Join(mnt, "sub"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(mnt, "sub/inside"), []byte("12345"), 0o644))
	t.Chdir(base)
	for _, args := range []string{"-L -f 10 -b -z", "-L -f 10 -b -zzz", "-L -f 10 -b -E", "-L -f 10 -z"} {
		t.Run(args, func(t *testing.T) {
			want := runFpart(t, base, append(strings.Fields(args), "t")...)
			opts, _, err := fpart.ParseArgs(strings.Fields(args))
			mustDo(t, err)
			parts, _ := walkAll(t, "t", opts)
			got := ourLines(parts, "t")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("lines differ:\n got %v\nwant %v", got, want)
			}
			crossed := false
			for _, l := range got {
				crossed = crossed || strings.HasPrefix(l.path, "t/mnt/")
			}
			if crossed != !opts.OneFileSystem {
				t.Errorf("entered the mount: %v, want %v", crossed, !opts.OneFileSystem)
			}
		})
	}
}
