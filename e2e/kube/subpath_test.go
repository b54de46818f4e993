package kubee2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"sigs.k8s.io/yaml"

	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/kube"
)

// workerSourceSubPath gives the workers' source mount a subPath of their own in the worker
// template, as a hand edit of the ConfigMap would.
func workerSourceSubPath(sub string) edit {
	return func(obj runtime.Object) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		job, err := kube.DecodeJob([]byte(cm.Data[kube.WorkerTemplateKey]))
		if err != nil {
			panic(err) // the rendered template decoded in kube's tests
		}
		c := &job.Spec.Template.Spec.Containers[0]
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].Name == kube.SourceVolume {
				c.VolumeMounts[i].SubPath = sub
			}
		}
		job.APIVersion, job.Kind = "batch/v1", "Job"
		data, err := yaml.Marshal(job)
		if err != nil {
			panic(err)
		}
		cm.Data[kube.WorkerTemplateKey] = string(data)
	}
}

// subPathTrees makes a source claim holding a generated tree at exports/tree, another tree
// whose names it shares none of at other, and a decoy file at its root, and returns the
// directories.
func (c *testCluster) subPathTrees() (tree, other string) {
	c.t.Helper()
	tree, other = filepath.Join(c.src, "exports", "tree"), filepath.Join(c.src, "other")
	if _, err := treegen.Generate(tree, treegen.Spec{Seed: 41, Files: 200, Hostile: true}); err != nil {
		c.t.Fatal(err)
	}
	for _, f := range []string{"other/unrelated-1", "other/unrelated-2", "other/sub/unrelated-3", "decoy-at-the-root"} {
		p := filepath.Join(c.src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not to be copied: "+f), 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	return tree, other
}

// TestSubPathsCopyOneDirectoryIntoAnother: --source-subpath exports/tree --dest-subpath
// copies/one copies that directory of the source claim, and nothing else of it, into that
// directory of the destination claim (made by the mount); the workers mount what the
// coordinator mounts.
func TestSubPathsCopyOneDirectoryIntoAnother(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	tree, _ := c.subPathTrees()
	before := c.scanSource()
	c.apply(c.render("--source-subpath", "exports/tree", "--dest-subpath", "copies/one"))

	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobComplete {
		t.Fatalf("coordinator Job ended %q, want Complete; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	if got, _ := c.waitJob(workerJob, time.Minute); got != batchv1.JobComplete {
		t.Errorf("worker Job ended %q, want Complete", got)
	}
	dest := filepath.Join(c.dst, "copies", "one")
	err := treecmp.Equal(tree, dest, treecmp.Options{Exclude: func(rel string) bool {
		return rel == stateDir || strings.HasPrefix(rel, stateDir+"/")
	}})
	if err != nil {
		t.Error(err)
	}
	top, err := os.ReadDir(c.dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || top[0].Name() != "copies" {
		t.Errorf("the destination claim's root holds %v, want only copies/ (the subPath)", top)
	}
	c.sourceUnchanged(before)
	for _, p := range c.pods(workerJob) {
		for _, m := range p.Spec.Containers[0].VolumeMounts {
			want := map[string]string{kube.SourceVolume: "exports/tree", kube.DestVolume: "copies/one"}[m.Name]
			if (m.Name == kube.SourceVolume || m.Name == kube.DestVolume) && m.SubPath != want {
				t.Errorf("worker pod %s mounts %s with subPath %q, want the coordinator's %q", p.Name, m.Name, m.SubPath, want)
			}
		}
	}
}

// TestWorkerOnAnotherSubPathIsStopped: a worker template that mounts another directory of the
// source claim than the coordinator walked (a hand edit) is caught by the workers' source
// check: the worker exits 2 naming the mismatch, the worker Job fails at once (exit 2 is
// FailJob), the coordinator fails saying so, and nothing of the other tree is copied.
func TestWorkerOnAnotherSubPathIsStopped(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.subPathTrees()
	c.apply(c.render("--source-subpath", "exports/tree"), workerSourceSubPath("other"))

	if got, _ := c.waitJob(coordinatorJob, jobTimeout); got != batchv1.JobFailed {
		t.Fatalf("coordinator Job ended %q, want Failed; termination message: %s", got, c.terminationMessages(coordinatorJob))
	}
	// The coordinator deleted the failed worker Job (a run given up stops its workers); its
	// outcome says why it gave up.
	if msg := c.terminationMessages(coordinatorJob); !strings.Contains(msg, "worker Job") || !strings.Contains(msg, "exit code 2") {
		t.Errorf("coordinator's termination message %q, want the worker Job failed with exit code 2", msg)
	}
	said := false
	for _, kl := range c.kubelets {
		for _, l := range kl.Logs() {
			if l.Namespace != c.ns || !strings.HasPrefix(l.Pod, workerJob+"-") {
				continue
			}
			data, err := os.ReadFile(l.Path)
			if err != nil {
				t.Fatal(err)
			}
			said = said || strings.Contains(string(data), "does not match the coordinator's")
		}
	}
	if !said {
		t.Error("no worker log says its source does not match the coordinator's")
	}
	var copied []string
	_ = filepath.WalkDir(c.dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, stateDir) {
			copied = append(copied, p)
		}
		return nil
	})
	if len(copied) > 0 {
		t.Errorf("files copied from the wrong tree: %v", copied[:min(len(copied), 5)])
	}
}
