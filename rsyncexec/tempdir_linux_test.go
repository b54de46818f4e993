package rsyncexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
)

const testTempDir = ".krsync-tmp-test"

// userFiles plants in the destination what a user may have there and krsync must not touch:
// a file named like rsync's temporary file of a listed name, and a symlinked directory
// leading out of the destination with a file behind it. It returns the outside directory.
func userFiles(t *testing.T, dst string) string {
	t.Helper()
	outside := t.TempDir()
	makeTree(t, outside, []entry{{path: "precious", content: "outside", mode: 0o644, uid: -1, gid: -1}})
	makeTree(t, dst, []entry{
		{path: ".report.txt.abc123", content: "the user's", mode: 0o644, uid: -1, gid: -1},
		{path: "sub/.f.XYZ123", content: "the user's too", mode: 0o644, uid: -1, gid: -1},
		{path: "outlink", mode: os.ModeSymlink, content: outside, uid: -1, gid: -1},
	})
	return outside
}

// checkUserFiles fails when anything userFiles planted changed.
func checkUserFiles(t *testing.T, dst, outside string) {
	t.Helper()
	for p, want := range map[string]string{
		filepath.Join(dst, ".report.txt.abc123"): "the user's",
		filepath.Join(dst, "sub/.f.XYZ123"):      "the user's too",
		filepath.Join(outside, "precious"):       "outside",
	} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q untouched", p, got, err, want)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("the directory behind the destination's symlink changed: %v", entries)
	}
}

// tempLeftovers lists krsync's temporary directories (TempDir, TempDir.*) and what is in
// them, and rsync-style temporary names anywhere else in the destination except the user's
// planted ones.
func tempLeftovers(t *testing.T, dst string) []string {
	t.Helper()
	var left []string
	_ = filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dst, p)
		switch {
		case err != nil || rel == ".":
		case rel == testTempDir || strings.HasPrefix(rel, testTempDir+".") || strings.HasPrefix(rel, testTempDir+"/"):
			left = append(left, rel)
		case rel == ".report.txt.abc123" || rel == "sub/.f.XYZ123":
		case strings.HasPrefix(d.Name(), "."):
			left = append(left, rel)
		}
		return nil
	})
	sort.Strings(left)
	return left
}

func TestRunTempDir(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name    string
		files   []entry
		list    []string
		prepare func(t *testing.T, dst string)
		wantErr bool
	}{
		{
			name:  "success",
			files: []entry{{path: "report.txt", content: "new report", mode: 0o644, uid: -1, gid: -1}, {path: "sub/f", content: "f", mode: 0o644, uid: -1, gid: -1}},
			list:  []string{"report.txt", "sub/f"},
		},
		{
			name:  "rsync fails",
			files: []entry{{path: "report.txt", content: "r", mode: 0o644, uid: -1, gid: -1}, {path: "clash", content: "a file here", mode: 0o644, uid: -1, gid: -1}},
			list:  []string{"report.txt", "clash"},
			// A non-empty directory where the source has a file: rsync cannot replace it (exit 23).
			prepare: func(t *testing.T, dst string) {
				makeTree(t, dst, []entry{{path: "clash/keep", content: "k", mode: 0o644, uid: -1, gid: -1}})
			},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			makeTree(t, src, tt.files)
			outside := userFiles(t, dst)
			if tt.prepare != nil {
				tt.prepare(t, dst)
			}
			res, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list(tt.list...), TempDir: testTempDir, TempLabel: "p1-a1"})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Run = %v, want error %v", err, tt.wantErr)
			}
			if !strings.Contains(strings.Join(res.Args, " "), " --temp-dir="+testTempDir+".p1-a1-") {
				t.Errorf("rsync did not get a temporary directory of its own, at the top of the destination: %q", res.Args)
			}
			checkUserFiles(t, dst, outside)
			if left := tempLeftovers(t, dst); len(left) > 0 {
				t.Errorf("left behind: %q", left)
			}
			if got, err := os.ReadFile(filepath.Join(dst, "report.txt")); err != nil || string(got) != tt.files[0].content {
				t.Errorf("report.txt = %q, %v", got, err)
			}
		})
	}
}

// TestRunTempDirStopped cancels a run in the middle of a big file, the way a worker stops on
// SIGTERM or a lost lease: the half-written file is gone with the run's directory.
func TestRunTempDirStopped(t *testing.T) {
	rsync := testbin.Rsync(t)
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src, []entry{{path: "big", content: strings.Repeat("x", 8<<20), mode: 0o644, uid: -1, gid: -1}})
	outside := userFiles(t, dst)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Job{Binary: rsync, Args: []string{"-a", "--bwlimit=256"}, Source: src, Dest: dst,
			List: list("big"), TempDir: testTempDir, TempLabel: "p7-a2", KillGrace: time.Second})
		done <- err
	}()
	waitFor(t, "rsync's temporary file in its directory", 30*time.Second, func() bool {
		matches, _ := filepath.Glob(filepath.Join(dst, testTempDir+".p7-a2-*", "big.*"))
		return len(matches) > 0
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want a cancellation", err)
	}
	checkUserFiles(t, dst, outside)
	if left := tempLeftovers(t, dst); len(left) > 0 {
		t.Errorf("a stopped run left behind: %q", left)
	}
	if _, err := os.Lstat(filepath.Join(dst, "big")); err == nil {
		t.Errorf("a half-copied big is in place")
	}
}

// TestTempDirNeverFollowed plants a symlink (or a file) with the names of krsync's
// temporary directories: a run makes a directory of its own beside it and never touches
// it, and the removal at the end of a run refuses it, leaving both the link and what it
// points to alone.
func TestTempDirNeverFollowed(t *testing.T) {
	rsync := testbin.Rsync(t)
	tests := []struct {
		name  string
		plant func(t *testing.T, p, outside string)
		says  string // what the removal's error must say
	}{
		{"symlink to an outside directory", func(t *testing.T, p, outside string) { must(t, os.Symlink(outside, p)) }, "is a symlink"},
		{"symlink to a directory inside", func(t *testing.T, p, _ string) {
			must(t, os.Mkdir(filepath.Join(filepath.Dir(p), "inside"), 0o755))
			must(t, os.Symlink("inside", p))
		}, "is a symlink"},
		{"a file", func(t *testing.T, p, _ string) { must(t, os.WriteFile(p, []byte("user data"), 0o644)) }, "is not a directory"},
	}
	for _, tt := range tests {
		for _, name := range []string{testTempDir, testTempDir + ".p1-a1-dead"} {
			t.Run(tt.name+" named "+name, func(t *testing.T) {
				src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
				makeTree(t, src, []entry{{path: "f", content: "f", mode: 0o644, uid: -1, gid: -1}})
				makeTree(t, outside, []entry{{path: "keep/me", content: "outside", mode: 0o644, uid: -1, gid: -1}})
				p := filepath.Join(dst, name)
				tt.plant(t, p, outside)
				before, _ := os.Lstat(p)

				if _, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list("f"), TempDir: testTempDir}); err != nil {
					t.Errorf("Run = %v; want a copy beside the planted entry", err)
				}
				if err := RemoveTempDir(dst, testTempDir); !errors.Is(err, ErrTempDir) || !strings.Contains(err.Error(), tt.says) || strings.Contains(err.Error(), "\n") {
					t.Errorf("RemoveTempDir = %v, want a one-line ErrTempDir saying %q", err, tt.says)
				}
				after, err := os.Lstat(p)
				if err != nil || after.Mode() != before.Mode() {
					t.Errorf("the planted %s changed: %v, %v", tt.name, after, err)
				}
				if got, err := os.ReadFile(filepath.Join(outside, "keep/me")); err != nil || string(got) != "outside" {
					t.Errorf("outside changed: %q, %v", got, err)
				}
				if entries, _ := os.ReadDir(outside); len(entries) != 1 {
					t.Errorf("something was created outside: %v", entries)
				}
			})
		}
	}
}

// TestRemoveTempDir removes a temporary directory full of what killed runs leave (and worse:
// symlinks out of the destination, unwritable directories) without following any link.
func TestRemoveTempDir(t *testing.T) {
	dst, outside := t.TempDir(), t.TempDir()
	makeTree(t, outside, []entry{
		{path: "precious", content: "outside", mode: 0o644, uid: -1, gid: -1},
		{path: "dir/inner", content: "outside too", mode: 0o644, uid: -1, gid: -1},
	})
	makeTree(t, dst, []entry{
		{path: "user-file", content: "keep", mode: 0o644, uid: -1, gid: -1},
		{path: testTempDir + ".p1-a1-x/big.AbC123", content: "half", mode: 0o600, uid: -1, gid: -1},
		{path: testTempDir + ".p2-a1-y/deep/er/f", content: "f", mode: 0o600, uid: -1, gid: -1},
		{path: testTempDir + ".p2-a1-y/to-dir", mode: os.ModeSymlink, content: filepath.Join(outside, "dir"), uid: -1, gid: -1},
		{path: testTempDir + ".p2-a1-y/to-file", mode: os.ModeSymlink, content: filepath.Join(outside, "precious"), uid: -1, gid: -1},
		{path: testTempDir + ".p3-a1-z", mode: os.ModeDir | 0o500, uid: -1, gid: -1},
		{path: testTempDir + "/old-layout", content: "f", mode: 0o600, uid: -1, gid: -1},
		{path: testTempDir + "x-not-ours", content: "a user's", mode: 0o644, uid: -1, gid: -1},
	})
	if err := RemoveTempDir(dst, testTempDir); err != nil {
		t.Fatalf("RemoveTempDir: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dst, testTempDir+"*")); len(left) != 1 || filepath.Base(left[0]) != testTempDir+"x-not-ours" {
		t.Errorf("left after the removal: %q; want only the user's %sx-not-ours", left, testTempDir)
	}
	for p, want := range map[string]string{
		filepath.Join(dst, "user-file"):              "keep",
		filepath.Join(dst, testTempDir+"x-not-ours"): "a user's",
		filepath.Join(outside, "precious"):           "outside",
		filepath.Join(outside, "dir", "inner"):       "outside too",
	} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want it untouched", p, got, err)
		}
	}
	if err := RemoveTempDir(dst, testTempDir); err != nil {
		t.Errorf("RemoveTempDir of a missing directory = %v, want nil", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "/abs"} {
		if err := RemoveTempDir(dst, bad); !errors.Is(err, ErrTempDir) {
			t.Errorf("RemoveTempDir(%q) = %v, want ErrTempDir", bad, err)
		}
	}
}
