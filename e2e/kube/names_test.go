package kubee2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/leaseapi"
)

// withToken sets the lease API token of the run's Secret.
func withToken(token string) edit {
	return func(obj runtime.Object) {
		if s, ok := obj.(*corev1.Secret); ok {
			s.StringData = map[string]string{kube.TokenSecretKey: token}
		}
	}
}

// statusWith asks the coordinator behind Service svc for its status with token.
func (c *testCluster) statusWith(svc, token string) (leaseapi.Status, error) {
	port, err := c.ports.Service(c.ns, svc, servicePort)
	if err != nil {
		c.t.Fatal(err)
	}
	client, err := leaseapi.NewClient(fmt.Sprintf("http://127.0.0.1:%d", port), leaseapi.ClientOptions{Token: token, GiveUpAfter: time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return client.Status(ctx)
}

// TestTwoRunsInOneNamespace: run A (`krsync manifests --name run-a`) and run B
// (examples/second-run: kustomize's namePrefix and instance label) copy two claims each in
// one namespace at the same time. Each run's Service reaches only its own coordinator, which
// refuses the other run's token; each worker Pod belongs to, and is configured for, its own
// run; both complete, and each destination equals its own source and holds nothing of the
// other's.
func TestTwoRunsInOneNamespace(t *testing.T) {
	streamB := kustomize(t, "../../examples/second-run")
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 31, Files: 300, Hostile: true})
	srcB, dstB := filepath.Join(t.TempDir(), "source"), filepath.Join(t.TempDir(), "dest")
	for _, d := range []string{srcB, dstB} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := treegen.Generate(srcB, treegen.Spec{Seed: 37, Files: 150, Hostile: true}); err != nil {
		t.Fatal(err)
	}
	c.claim("archive-source", srcB, corev1.ReadWriteMany)
	c.claim("archive-dest", dstB, corev1.ReadWriteMany)

	a, b := kube.NamesFor("run-a"), kube.NamesFor("nightly-"+kube.DefaultRunName)
	tokenB := "e2e-second-run-token"
	c.apply(c.render("--name", "run-a", "--parallelism", "2"))
	c.apply(streamB, withImage(c.coordinatorImage()), withToken(tokenB))

	// While both run: each coordinator answers its own token only.
	crossChecked := map[string]bool{}
	c.waitFor("both coordinators to refuse the other run's token", jobTimeout, func() (bool, error) {
		for _, r := range []struct{ svc, own, other string }{{a.Coordinator, c.token, tokenB}, {b.Coordinator, tokenB, c.token}} {
			if crossChecked[r.svc] {
				continue
			}
			if _, err := c.statusWith(r.svc, r.own); err != nil {
				continue // not serving yet (or already gone: the check below fails)
			}
			_, err := c.statusWith(r.svc, r.other)
			if !errors.Is(err, leaseapi.ErrUnauthorized) {
				return false, fmt.Errorf("coordinator %s with the other run's token: %v, want unauthorized", r.svc, err)
			}
			crossChecked[r.svc] = true
		}
		for _, job := range []string{a.Coordinator, b.Coordinator} {
			if got, _, _ := c.jobCondition(job); got != "" && !crossChecked[job] {
				return false, fmt.Errorf("coordinator Job %s ended before its token could be checked", job)
			}
		}
		return len(crossChecked) == 2, nil
	})

	for _, run := range []struct {
		names    kube.RunNames
		instance string
		token    string
		src, dst string
	}{
		{a, "run-a", a.Token, c.src, c.dst},
		{b, "nightly", b.Token, srcB, dstB},
	} {
		if got, _ := c.waitJob(run.names.Coordinator, jobTimeout); got != batchv1.JobComplete {
			t.Fatalf("coordinator Job %s ended %q, want Complete; termination message: %s", run.names.Coordinator, got, c.terminationMessages(run.names.Coordinator))
		}
		if got, _ := c.waitJob(run.names.Worker, time.Minute); got != batchv1.JobComplete {
			t.Errorf("worker Job %s ended %q, want Complete", run.names.Worker, got)
		}
		err := treecmp.Equal(run.src, run.dst, treecmp.Options{Exclude: func(rel string) bool {
			return rel == stateDir || strings.HasPrefix(rel, stateDir+"/")
		}})
		if err != nil {
			t.Errorf("run %s: %v", run.instance, err)
		}
		workers := c.pods(run.names.Worker)
		if len(workers) == 0 {
			t.Errorf("run %s: no worker pods", run.instance)
		}
		for _, p := range workers {
			env := map[string]corev1.EnvVar{}
			for _, v := range p.Spec.Containers[0].Env {
				env[v.Name] = v
			}
			ref := env["KRSYNC_TOKEN"].ValueFrom
			if p.Labels[kube.InstanceLabel] != run.instance || env["KRSYNC_COORDINATOR"].Value != "http://"+run.names.Coordinator+":8080" ||
				ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != run.token {
				t.Errorf("worker pod %s of run %s: labels %v, coordinator %q, token %+v: want its own run's", p.Name, run.instance,
					p.Labels, env["KRSYNC_COORDINATOR"].Value, ref)
			}
		}
	}
}
