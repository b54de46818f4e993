package rsyncexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/krsync/krsync/internal/testing/testbin"
)

// TestRunRefusesSymlinkedParents: an entry below a symlink that leads out of the source is
// not copied (rsync's sender would follow it), the partition's other entries are, and the
// error names the refused entries and is not worth a retry. A symlink as the entry itself is
// copied as a link.
func TestRunRefusesSymlinkedParents(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name    string
		list    []string
		dirs    bool
		refused []string
		copied  []string
	}{
		{"symlinked top-level parent", []string{"ok", "lnk/secret", "d/f"}, false, []string{"lnk/secret"}, []string{"ok", "d/f"}},
		{"symlink deeper in the chain", []string{"d/inner/secret", "ok"}, false, []string{"d/inner/secret"}, []string{"ok"}},
		{"first and last entries", []string{"lnk/secret", "ok", "d/inner/deeper/x"}, false, []string{"lnk/secret", "d/inner/deeper/x"}, []string{"ok"}},
		{"the entry itself is a symlink: copied as a link", []string{"lnk", "d/inner"}, false, nil, []string{"lnk", "d/inner"}},
		{"directory pass", []string{"d", "lnk/sub"}, true, []string{"lnk/sub"}, nil},
		{"only refused entries: rsync not run", []string{"lnk/secret", "lnk/sub"}, false, []string{"lnk/secret", "lnk/sub"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
			makeTree(t, outside, []entry{
				{path: "secret", content: "not yours", mode: 0o600, uid: -1, gid: -1},
				{path: "sub", mode: os.ModeDir | 0o700, uid: -1, gid: -1},
				{path: "deeper/x", content: "x", mode: 0o600, uid: -1, gid: -1},
			})
			makeTree(t, src, []entry{
				{path: "ok", content: "fine", mode: 0o644, uid: -1, gid: -1},
				{path: "d/f", content: "fine too", mode: 0o644, uid: -1, gid: -1},
				{path: "lnk", mode: os.ModeSymlink, content: outside, uid: -1, gid: -1},
				{path: "d/inner", mode: os.ModeSymlink, content: outside, uid: -1, gid: -1},
			})
			res, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list(tt.list...), Dirs: tt.dirs})
			var refused *RefusedError
			switch {
			case tt.refused == nil && err != nil:
				t.Fatalf("Run: %v", err)
			case tt.refused != nil && !errors.As(err, &refused):
				t.Fatalf("Run = %v, want a *RefusedError", err)
			case tt.refused != nil:
				if !reflect.DeepEqual(refused.Paths, tt.refused) || refused.Count != len(tt.refused) || refused.Err != nil {
					t.Errorf("refused %q (count %d, rsync error %v); want %q", refused.Paths, refused.Count, refused.Err, tt.refused)
				}
				if Retryable(err) || !errors.Is(err, ErrSymlinkParent) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q: want one line, not retryable, wrapping ErrSymlinkParent", err)
				}
			}
			if strings.HasPrefix(tt.name, "only refused") && res.Args != nil {
				t.Errorf("rsync ran: %q", res.Args)
			}
			for _, p := range tt.copied {
				if _, err := os.Lstat(filepath.Join(dst, p)); err != nil {
					t.Errorf("%s not copied: %v", p, err)
				}
			}
			var found []string
			_ = filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
				if err == nil && (d.Name() == "secret" || d.Name() == "x" || d.Name() == "sub") {
					found = append(found, p)
				}
				return nil
			})
			if len(found) > 0 {
				t.Errorf("read through a symlink out of the source: %q", found)
			}
		})
	}
}
