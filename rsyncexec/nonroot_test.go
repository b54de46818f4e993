package rsyncexec

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
)

// nonRootEnv tells the test binary, re-run as user nobody, where to work.
const nonRootEnv = "RSYNCEXEC_NONROOT_DIR"

// TestRunAsNonRoot runs file passes and the directory pass as an unprivileged user over
// read-only directories (0555, 0500): the file passes must be able to write into them (Run
// adds --chmod=Du+rwx), and the directory pass must put the real modes and mtimes back.
// As root it re-runs this test binary as nobody (setpriv), since rsync runs as Run's user.
func TestRunAsNonRoot(t *testing.T) {
	rsync := testbin.Rsync(t)
	if os.Geteuid() != 0 {
		nonRootScenario(t, rsync, t.TempDir())
		return
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testbin.SkipOrFail(t, "running as root and setpriv (util-linux) is missing: cannot run as an unprivileged user")
	}
	base := t.TempDir()
	for _, dir := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(base, "work")
	if err := os.Mkdir(work, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(work, 0o777); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(base, "rsyncexec.test")
	copyFile(t, os.Args[0], self, 0o755)
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		self, "-test.run=^TestNonRootHelper$", "-test.v")
	cmd.Env = append(os.Environ(), nonRootEnv+"="+work, "RSYNCEXEC_RSYNC="+rsync, "HOME="+work, "TMPDIR="+work)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestNonRootHelper") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

// TestNonRootHelper is TestRunAsNonRoot's body when the test binary runs as nobody; on its
// own it has nothing to do.
func TestNonRootHelper(t *testing.T) {
	work := os.Getenv(nonRootEnv)
	if work == "" {
		return
	}
	if os.Geteuid() == 0 {
		t.Fatal("the helper must not run as root")
	}
	nonRootScenario(t, os.Getenv("RSYNCEXEC_RSYNC"), work)
}

func nonRootScenario(t *testing.T, rsync, work string) {
	src, dst := filepath.Join(work, "src"), filepath.Join(work, "dst")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	makeTree(t, src, []entry{
		{path: "ro", mode: os.ModeDir | 0o555, uid: -1, gid: -1},
		{path: "ro/f1", content: "1", mode: 0o444, uid: -1, gid: -1},
		{path: "ro/f2", content: "2", mode: 0o644, uid: -1, gid: -1},
		{path: "ro/sub", mode: os.ModeDir | 0o500, uid: -1, gid: -1},
		{path: "ro/sub/f3", content: "3", mode: 0o600, uid: -1, gid: -1},
		{path: "ro/slow", content: strings.Repeat("s", 128<<10), mode: 0o644, uid: -1, gid: -1},
	})
	// A slow partition writes into ro/ while a quick one finishes there: rsync restores a
	// directory's read-only mode at the end of its run, which would make the slow one's final
	// rename fail if Run did not keep directories writable.
	slowDone := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), Job{Binary: rsync, Args: append([]string{"--bwlimit=64"}, DefaultArgs...), Source: src, Dest: dst, List: list("ro/slow")})
		slowDone <- err
	}()
	waitFor(t, "the slow partition's temporary file", 30*time.Second, func() bool {
		entries, _ := os.ReadDir(filepath.Join(dst, "ro"))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".slow.") {
				return true
			}
		}
		return false
	})
	for _, part := range [][]string{{"ro/f1"}, {"ro/f2", "ro/sub/f3"}} {
		if _, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list(part...)}); err != nil {
			t.Fatalf("files pass %q: %v", part, err)
		}
	}
	if err := <-slowDone; err != nil {
		t.Fatalf("slow files pass: %v", err)
	}
	if _, err := Run(context.Background(), Job{Binary: rsync, Source: src, Dest: dst, List: list(".", "ro", "ro/sub"), Dirs: true}); err != nil {
		t.Fatalf("directory pass: %v", err)
	}
	srcTree, dstTree := readTree(t, src), readTree(t, dst)
	if diffs := diffTrees(srcTree, dstTree, nil, true); len(diffs) > 0 {
		t.Errorf("after the directory pass:\n%s", strings.Join(diffs, "\n"))
	}
	// Let t.TempDir's cleanup remove what a non-root user made read-only.
	t.Cleanup(func() {
		_ = filepath.Walk(work, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
