package kubee2e

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/leaseapi"
)

// TestMirrorAndVerifyThroughManifests: `krsync manifests --mirror --verify` applied on a
// destination claim that holds an earlier copy gone out of date (stale files, extraneous
// files, directories and a symlink out of the volume, a file turned directory) ends with the
// destination equal to the source and nothing outside it touched; `krsync status` shows the
// mirror run while it goes on, and the termination message and the Completed Event tell what
// was deleted and that the comparison after the copy found the trees equal.
func TestMirrorAndVerifyThroughManifests(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	// The big file is made stale below: copied again under slowRsync's --bwlimit, it keeps
	// the run going for seconds, long enough to read its status.
	c.generate(treegen.Spec{Seed: 17, Files: 300, Hostile: true, BigFiles: 1, BigSize: 6 << 20})
	outside := c.outdateDest()
	before := c.scanSource()
	c.apply(c.render("--parallelism", "2", "--mirror", "--verify", "--rsync-opts", slowRsync))

	client := c.coordinatorClient()
	var running leaseapi.Status
	c.waitFor("the coordinator's status during the run", 2*time.Minute, func() (bool, error) {
		st, err := client.Status(context.Background())
		if err != nil || st.Finished || !st.WalkDone {
			return false, nil
		}
		running = st
		return true, nil
	})
	if !running.Mirror || running.DryRun {
		t.Errorf("status during the run: mirror %v, dry run %v; want a mirror run", running.Mirror, running.DryRun)
	}
	report := c.statusCommand()
	if !strings.Contains(report, "deleted:") {
		t.Errorf("krsync status during the mirror run shows no deletions line:\n%s", report)
	}
	t.Logf("krsync status during the run:\n%s", report)

	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %s, want Complete; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	if got, _ := c.waitJob(workerJob, time.Minute); got != batchv1.JobComplete {
		t.Errorf("worker Job ended %s, want Complete", got)
	}
	c.destEqualsSource()
	c.sourceUnchanged(before)
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the file behind the destination's extraneous symlink: %v; --mirror must delete the link, not follow it", err)
	}

	// The outcome says what --mirror deleted and what --verify found, after it ran.
	msg := c.terminationMessages(coordinatorJob)
	t.Logf("termination message: %s", msg)
	checkMirrorOutcome(t, "the termination message", msg)
	var outcome *corev1.Event
	for _, e := range c.events() {
		if e.InvolvedObject.Kind == "Job" && e.InvolvedObject.Name == workerJob && e.Reason == "Completed" {
			outcome = &e
		}
	}
	if outcome == nil || outcome.Type != corev1.EventTypeNormal {
		t.Fatalf("want a Normal Event Completed on Job %s, got %+v", workerJob, outcome)
	}
	checkMirrorOutcome(t, "the Completed Event", outcome.Message)
}

// TestMirrorComparesInTheWalk: with the manifests' own rsync options, the coordinator sees
// that its workers mount the same destination and compares it in its walk: the outdated
// destination's unchanged entries go in no partition, and the run still ends an exact,
// verified mirror (what changed copied, what is extraneous deleted, nothing outside touched).
func TestMirrorComparesInTheWalk(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 19, Files: 300, Hostile: true, BigFiles: 1, BigSize: 1 << 20})
	outside := c.outdateDest()
	before := c.scanSource()
	c.apply(c.render("--parallelism", "2", "--mirror", "--verify"))
	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %s, want Complete; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	c.destEqualsSource()
	c.sourceUnchanged(before)
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the file behind the destination's extraneous symlink: %v", err)
	}
	checkMirrorOutcome(t, "the termination message", c.terminationMessages(coordinatorJob))
	log := c.containerLog(coordinatorJob, 1<<20)
	if !strings.Contains(log, `"compare_dest":true`) {
		t.Errorf("the coordinator did not compare the destination in its walk:\n%s", log)
	}
	if m := regexp.MustCompile(`"unchanged":(\d+)[^\n]*"message":"walk done"`).FindStringSubmatch(log); m == nil || m[1] == "0" {
		t.Errorf("the walk left out no unchanged entry (%q):\n%s", m, log)
	}
}

// TestVerifyDifferenceIsTheOutcome: a destination file with the source's size and mtime but
// other bytes passes rsync's quick check, so the copy leaves it; `krsync manifests
// --verify-checksum` makes the coordinator find it after the copy, exit 1 (the Job fails at
// once), and say so in its termination message and a Warning Event Failed.
func TestVerifyDifferenceIsTheOutcome(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 19, Files: 120})
	c.firstCopy()
	const rel = "d00/f0000001"
	info, err := os.Stat(filepath.Join(c.src, rel))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(c.dst, rel))
	if err != nil || len(data) == 0 {
		t.Fatalf("%s in the destination: %d bytes, %v", rel, len(data), err)
	}
	data[0] ^= 0xff
	if err := os.WriteFile(filepath.Join(c.dst, rel), data, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(c.dst, rel), info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	c.apply(c.render("--parallelism", "2", "--verify-checksum"))

	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobFailed {
		t.Fatalf("coordinator Job ended %s, want Failed (exit 1: the trees differ); termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	msg := c.terminationMessages(coordinatorJob)
	t.Logf("termination message: %s", msg)
	const want = "differ: 1 difference (1 content)"
	if !strings.Contains(msg, "krsync failed: verify: ") || !strings.Contains(msg, want) ||
		!strings.Contains(msg, "verify: 1 difference (") {
		t.Errorf("the termination message does not tell the difference --verify-checksum found (want %q): %s", want, msg)
	}
	var outcome *corev1.Event
	c.waitFor("a Warning Event Failed on the worker Job", time.Minute, func() (bool, error) {
		for _, e := range c.events() {
			if e.InvolvedObject.Kind == "Job" && e.InvolvedObject.Name == workerJob && e.Reason == "Failed" {
				outcome = &e
			}
		}
		return outcome != nil, nil
	})
	if outcome.Type != corev1.EventTypeWarning || !strings.Contains(outcome.Message, want) {
		t.Errorf("Event Failed: %s %q, want a Warning holding %q", outcome.Type, outcome.Message, want)
	}
}

// mirrorDeleted counts the entries outdateDest adds that the source lacks: extra-top,
// extra-dir with sub and file, extra-deep, extra-link, turned with inner and file.
const mirrorDeleted = 9

// checkMirrorOutcome: a one-line outcome says the run is done, with mirrorDeleted deletions,
// and that --verify found the trees equal.
func checkMirrorOutcome(t *testing.T, what, msg string) {
	t.Helper()
	if !strings.Contains(msg, "krsync done") {
		t.Errorf("%s does not say the run is done: %s", what, msg)
	}
	n := -1
	if m := regexp.MustCompile(`; (\d+) deleted`).FindStringSubmatch(msg); m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	if n != mirrorDeleted {
		t.Errorf("%s counts %d deletions, want %d: %s", what, n, mirrorDeleted, msg)
	}
	if !strings.Contains(msg, "verify: equal (") {
		t.Errorf("%s does not tell --verify's outcome (want \"verify: equal (...)\"): %s", what, msg)
	}
}

// outdateDest fills the destination claim with a copy of the source (the real rsync), then
// outdates it: two stale files (the big one and the first small one: other contents and
// mtime), mirrorDeleted extraneous entries (a file at the top, a directory tree, a file in
// the deepest directory, a symlink to a file outside the volume, a directory where the
// source has a file, which it adds to the source). It returns the file the symlink points to.
func (c *testCluster) outdateDest() string {
	c.t.Helper()
	c.firstCopy()
	var small, big, deepest string
	err := filepath.WalkDir(c.dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.dst, p)
		switch {
		case d.IsDir() && strings.Count(rel, "/") > strings.Count(deepest, "/"):
			deepest = rel
		case d.Type().IsRegular() && strings.HasPrefix(rel, "big/"):
			big = rel
		case d.Type().IsRegular() && small == "" && singleLink(p):
			small = rel
		}
		return nil
	})
	if err != nil || small == "" || big == "" || deepest == "" {
		c.t.Fatalf("pick stale files in the destination: small %q, big %q, deepest directory %q: %v", small, big, deepest, err)
	}
	at := func(rel string) string { return filepath.Join(c.dst, rel) }
	must := func(err error) {
		c.t.Helper()
		if err != nil {
			c.t.Fatal(err)
		}
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, rel := range []string{small, big} {
		data, err := os.ReadFile(at(rel))
		must(err)
		for i := range data {
			data[i] ^= 0x5a
		}
		must(os.WriteFile(at(rel), data, 0))
		must(os.Chtimes(at(rel), old, old))
	}
	outside := filepath.Join(c.t.TempDir(), "outside")
	must(os.WriteFile(outside, []byte("not in the destination"), 0o644))
	must(os.WriteFile(at("extra-top"), []byte("gone from the source"), 0o644))
	must(os.MkdirAll(at("extra-dir/sub"), 0o755))
	must(os.WriteFile(at("extra-dir/sub/file"), []byte("gone"), 0o600))
	must(os.WriteFile(at(filepath.Join(deepest, "extra-deep")), []byte("gone, deep"), 0o644))
	must(os.Symlink(outside, at("extra-link")))
	// The small stale file's sibling: a file in the source, a directory in the destination.
	turned := filepath.Join(filepath.Dir(small), "turned")
	must(os.WriteFile(filepath.Join(c.src, turned), []byte("a file in the source"), 0o644))
	must(os.MkdirAll(at(filepath.Join(turned, "inner")), 0o755))
	must(os.WriteFile(at(filepath.Join(turned, "inner", "file")), []byte("below a directory"), 0o644))
	c.t.Logf("destination outdated: stale %q and %q, extraneous entries at the top, in %q, and %q a directory", small, big, deepest, turned)
	return outside
}

// firstCopy copies the source claim's tree into the destination claim with the real rsync.
func (c *testCluster) firstCopy() {
	c.t.Helper()
	rsync := testbin.Rsync(c.t)
	if out, err := exec.Command(rsync, "-aH", "--numeric-ids", c.src+"/", c.dst+"/").CombinedOutput(); err != nil {
		c.t.Fatalf("rsync the first copy: %v\n%s", err, out)
	}
}

// singleLink says whether the file at p has one name (a stale hard-linked file is fine for
// --mirror, but would make two stale files of one).
func singleLink(p string) bool {
	info, err := os.Lstat(p)
	if err != nil {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 1
}

// statusCommand runs `krsync status --coordinator` against the coordinator's Service port,
// as an operator would from a pod, and returns what it prints.
func (c *testCluster) statusCommand() string {
	c.t.Helper()
	port, err := c.ports.Service(c.ns, serviceName, servicePort)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "status", "--coordinator", "http://127.0.0.1:"+strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "KRSYNC_TOKEN="+c.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("krsync status: %v\n%s", err, out)
	}
	return string(out)
}
