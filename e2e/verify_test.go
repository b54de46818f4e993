package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/leaseapi"
)

// sameSizeEdit changes the first byte of a file and puts its mtime back: rsync's quick
// check (size and mtime) then leaves it alone, and only a comparison of contents sees it.
func sameSizeEdit(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		t.Fatalf("read %s: %v (%d bytes)", path, err, len(data))
	}
	data[0] ^= 0xff
	if err := os.WriteFile(path, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// relink makes dest/b a second name of dest/a (equal files, so rsync leaves both alone),
// keeping the mtime of b's directory.
func relink(t *testing.T, dest, a, b string) {
	t.Helper()
	dir := filepath.Dir(filepath.Join(dest, b))
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dest, b)); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dest, a), filepath.Join(dest, b)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(dir, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// TestLocalVerifyHostileTree: `krsync local --verify-checksum` on the hostile tree exits 0
// (the workers' verify leases find the copy equal); after two differences a re-sync with
// --size-only cannot see are planted in the copy (a same-size content change, two equal
// files linked in the destination only, in different directories), the same command exits 1
// naming them. (With the default options the re-sync gives the destination-only link its own inode:
// rsyncexec's TestRunBreaksForeignLinks.)
func TestLocalVerifyHostileTree(t *testing.T) {
	t.Parallel()
	testbin.Rsync(t)
	w := newLocalWorld(t)
	newHostileTree(t, w.src, hostileSpec(1207, 700, 0))
	old := time.Date(2002, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, f := range []string{"plant/content.txt", "plant-a/twin", "plant-b/twin"} {
		p := filepath.Join(w.src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, "planted contents\n", 0o644)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	summary := filepath.Join(t.TempDir(), "summary.json")
	args := []string{"--source", w.src, "--dest", w.dest, "--workers", "3", "--verify-checksum", "--summary-json", summary,
		"--rsync-opts=--archive --numeric-ids --hard-links --size-only"}
	first := syncLocal(t, w, runOptions{}, args...)
	compareTrees(t, w.src, w.dest)
	if !strings.Contains(first.stderr, `"differences":0,`) || !strings.Contains(first.stderr, `"message":"verify: done"`) {
		t.Errorf("no equal verdict in the log:\n%s", truncateLines(first.stderr, 40))
	}
	var rec leaseapi.Record
	if data, err := os.ReadFile(summary); err != nil || json.Unmarshal(data, &rec) != nil {
		t.Fatalf("--summary-json: %v\n%s", err, data)
	}
	if v := rec.Verify; v == nil || v.Differences != 0 || v.Entries < 700 || !v.Checksum {
		t.Errorf("summary's verify %+v: want equal, contents, at least 700 entries compared", v)
	}

	sameSizeEdit(t, filepath.Join(w.dest, "plant/content.txt"))
	relink(t, w.dest, "plant-a/twin", "plant-b/twin")
	second := runKrsync(t, runOptions{env: w.env()}, append([]string{"--log-format=json", "local"}, args...)...)
	if second.code != 1 {
		t.Fatalf("exit %d after planting differences, want 1:\n%s", second.code, truncateLines(second.stderr, 60))
	}
	for _, want := range []string{
		`"kind":"content","path":"plant/content.txt"`,
		`"kind":"hardlink","path":"plant-a/twin"`,
		`"kind":"hardlink","path":"plant-b/twin"`,
	} {
		if !strings.Contains(second.stderr, want) {
			t.Errorf("the log does not name %s:\n%s", want, truncateLines(second.stderr, 60))
		}
	}
	if last := finalLine(second.stderr); !strings.Contains(last, "3 differences (1 content, 2 hardlink)") {
		t.Errorf("last line %q does not count the differences", last)
	}
}

// TestFaultVerifyWorkerKilledDuringVerification: a worker SIGKILLed while it holds a verify
// lease (alone, so the lease seen held is its) leaves that lease to expire; another worker
// takes it again and the run ends with the right verdict: exit 1 naming the one difference
// planted in the destination before the run (a same-size content change rsync cannot see).
func TestFaultVerifyWorkerKilledDuringVerification(t *testing.T) {
	t.Parallel()
	bin := buildKrsync(t)
	rsync := testbin.Rsync(t)
	r := &faultRun{bin: bin, src: filepath.Join(t.TempDir(), "src"), dest: filepath.Join(t.TempDir(), "dest")}
	// Many directories of a few files: verify leases of 500 directories that take a while
	// with contents compared, so that the victim is seen holding one.
	old := time.Date(2003, 4, 5, 6, 7, 8, 0, time.UTC)
	block := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	for i := range 2500 {
		dir := filepath.Join(r.src, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("e%04d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range 2 {
			p := filepath.Join(dir, fmt.Sprintf("f%d", j))
			writeFile(t, p, fmt.Sprintf("%d.%d\n", i, j)+block, 0o644)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := exec.Command(rsync, "-aH", r.src+"/", r.dest+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	planted := "d17/e1017/f1"
	sameSizeEdit(t, filepath.Join(r.dest, planted))

	r.tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(r.tokenFile, []byte(faultToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	r.url = "http://" + addr
	r.coordinator = startProcess(t, "coordinator", bin, "--log-format=json", "--log-level=debug", "coordinator",
		"--source", r.src, "--dest", r.dest, "--listen", addr, "--fpart-opts=-f 500 -zz",
		"--lease-ttl", "2s", "--token-file", r.tokenFile, "--linger=5s", "--verify-checksum")
	client, err := leaseapi.NewClient(r.url, leaseapi.ClientOptions{
		Token: faultToken, GiveUpAfter: 30 * time.Second, RetryWaitMin: 20 * time.Millisecond, RetryWaitMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.client = client

	victim := r.startWorker(t, "victim", rsync)
	// Poll fast: the first status that shows a verify lease held is the victim's.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		st, err := r.client.Status(ctx)
		cancel()
		if err == nil && st.Verify != nil && st.Verify.State == leaseapi.VerifyRunning && st.Partitions.Leased > 0 {
			victim.Signal(t, syscall.SIGKILL)
			t.Logf("victim killed holding a verify lease: %d of %d directories compared", st.Verify.DirsDone, st.Verify.Dirs)
			break
		}
		if err == nil && st.Verify != nil && st.Verify.State == leaseapi.VerifyDone || time.Now().After(deadline) {
			t.Fatalf("never saw the victim hold a verify lease; status %+v verify %+v\n%s", st.Partitions, st.Verify, victim.Output())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if code := victim.Wait(t); code == 0 {
		t.Fatal("the killed worker exited 0")
	}
	survivor := r.startWorker(t, "survivor", rsync)
	if code := survivor.Wait(t); code != 0 {
		t.Errorf("survivor exited %d:\n%s", code, survivor.Output())
	}
	if code := r.coordinator.Wait(t); code != 1 {
		t.Fatalf("coordinator exited %d, want 1 (the planted difference):\n%s", code, truncateLines(r.coordinator.Output(), 80))
	}
	out := r.coordinator.Output()
	if !strings.Contains(out, `"kind":"content","path":"`+planted+`"`) || !strings.Contains(finalLine(out), "1 difference (1 content)") {
		t.Errorf("the coordinator does not name the one planted difference:\n%s", truncateLines(out, 80))
	}
	if !strings.Contains(survivor.Output(), `"kind":"verify"`) || !strings.Contains(survivor.Output(), `"attempt":2`) {
		t.Errorf("the survivor did not take the victim's verify lease again (attempt 2):\n%s", truncateLines(survivor.Output(), 40))
	}
}
