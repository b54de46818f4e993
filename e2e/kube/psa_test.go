package kubee2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
)

// imageUser is the image's default user (tools/mkimage, Dockerfile), which --restricted
// pods run as.
const imageUser = 65532

// enforcePodSecurity labels the test's namespace so that the API server's PodSecurity
// admission enforces level on every Pod created in it from now on.
func (c *testCluster) enforcePodSecurity(level string) {
	c.t.Helper()
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"` + level + `","pod-security.kubernetes.io/enforce-version":"latest"}}}`)
	if _, err := c.cs.CoreV1().Namespaces().Patch(context.Background(), c.ns, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// TestBaselineAdmitsDefaultManifests: in a namespace enforcing Pod Security "baseline", the
// default manifests' pods (root with a few capabilities) are admitted and copy a hostile tree
// faithfully.
func TestBaselineAdmitsDefaultManifests(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.enforcePodSecurity("baseline")
	c.generate(treegen.Spec{Seed: 43, Files: 300, Hostile: true})
	c.apply(c.render())
	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %q, want Complete; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	if got, _ := c.waitJob(workerJob, time.Minute); got != batchv1.JobComplete {
		t.Errorf("worker Job ended %q, want Complete", got)
	}
	c.destEqualsSource()
}

// restrictedRun prepares a namespace enforcing Pod Security "restricted" and a destination
// the image's user owns (as an operator must: a non-root coordinator writes its journal there
// and puts back the root's mtime, which only the owner may set), and applies --restricted.
func (c *testCluster) restrictedRun() {
	c.t.Helper()
	c.enforcePodSecurity("restricted")
	if err := os.Chown(c.dst, imageUser, imageUser); err != nil {
		c.t.Fatal(err)
	}
	c.apply(c.render("--restricted"))
}

// TestRestrictedAdmitsRestrictedManifests: in a namespace enforcing "restricted", the pods of
// `krsync manifests --restricted` are admitted and copy a tree the image's user can read:
// everything equal but the owners (the documented trade-off).
func TestRestrictedAdmitsRestrictedManifests(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 47, Files: 300})
	c.restrictedRun()
	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %q, want Complete; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	if got, _ := c.waitJob(workerJob, time.Minute); got != batchv1.JobComplete {
		t.Errorf("worker Job ended %q, want Complete", got)
	}
	diffs, err := treecmp.Compare(c.src, c.dst, treecmp.Options{Exclude: func(rel string) bool {
		return rel == stateDir || strings.HasPrefix(rel, stateDir+"/")
	}})
	if err != nil {
		t.Fatal(err)
	}
	var other []treecmp.Difference
	for _, d := range diffs {
		if d.Kind != treecmp.UID && d.Kind != treecmp.GID {
			other = append(other, d)
		}
	}
	if len(other) > 0 {
		t.Errorf("the destination differs from the source in more than owners:\n%s", treecmp.Format(other, 30))
	}
}

// TestRestrictedRunNamesWhatItCannotRead: the other side of the trade-off: a file only root
// may read is not copied, and the run fails (exit 1) naming it and why.
func TestRestrictedRunNamesWhatItCannotRead(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 53, Files: 100})
	secret := filepath.Join(c.src, "root-only.key")
	if err := os.WriteFile(secret, []byte("only root reads this"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.restrictedRun()
	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobFailed {
		t.Fatalf("coordinator Job ended %q, want Failed; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	msg := c.terminationMessages(coordinatorJob)
	if !strings.Contains(msg, "root-only.key") || !strings.Contains(strings.ToLower(msg), "permission denied") {
		t.Errorf("termination message %q, want it to name root-only.key and say permission denied", msg)
	}
	t.Logf("outcome: %s", msg)
	if _, err := os.Lstat(filepath.Join(c.dst, "root-only.key")); err == nil {
		t.Error("root-only.key was copied by a user that cannot read it")
	}
}
