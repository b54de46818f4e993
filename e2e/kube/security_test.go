package kubee2e

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/kube"
)

// TestEveryAddedCapabilityIsNeeded: the manifests run both pods as root with every capability
// dropped but a few; TestApplyManifestsCopiesHostileTree shows those are enough for a faithful
// copy. Here each added capability is taken away in turn, from a manifest rendered as usual,
// and the same kind of copy (a hostile tree under a root the pods do not own) must then fail
// or end unequal: a capability whose removal changes nothing is more than the copy needs and
// fails the test. What broke is logged for each, and for the capabilities the manifests add
// today it must be what that capability is for (symptoms).
func TestEveryAddedCapabilityIsNeeded(t *testing.T) {
	stream := renderForInspection(t)
	added := addedCapabilities(t, stream)
	for _, pod := range []string{"coordinator", "worker"} {
		if len(added[pod]) == 0 {
			t.Fatalf("the rendered %s adds no capability: want root with a few (drop ALL, add ...)", pod)
		}
	}
	pods := make([]string, 0, len(added))
	for pod := range added {
		pods = append(pods, pod)
	}
	sort.Strings(pods)
	for _, pod := range pods {
		for _, capability := range added[pod] {
			t.Run(fmt.Sprintf("%s without %s", pod, capability), func(t *testing.T) {
				// Not parallel: the scheduler would bind one test's pods to another's Nodes, whose
				// kubelet ends with its test.
				c := newCluster(t, clusterOptions{})
				c.generate(treegen.Spec{Seed: 17, Files: 60, Hostile: true})
				// One attempt per partition: a failure is the capability's, retrying cannot help.
				c.apply(c.render("--parallelism", "2"), withoutCapability(pod, capability), coordinatorEnv("KRSYNC_MAX_ATTEMPTS", "1"))
				got, _ := c.waitJob(coordinatorJob, jobTimeout)
				diffs, err := treecmp.Compare(c.src, c.dst, treecmp.Options{Exclude: func(rel string) bool {
					return rel == stateDir || strings.HasPrefix(rel, stateDir+"/")
				}})
				if err != nil {
					t.Fatal(err)
				}
				if got == batchv1.JobComplete && len(diffs) == 0 {
					t.Fatalf("%s copied the hostile tree faithfully without %s: the capability is not needed, drop it from its manifest", pod, capability)
					return
				}
				logs := c.containerLog(coordinatorJob, 20000) + c.containerLog(workerJob, 20000)
				if testing.Verbose() && os.Getenv("KRSYNC_E2E_DEBUG") == "1" {
					t.Log(logs)
				}
				msg := c.terminationMessages(coordinatorJob)
				if msg == "" {
					msg = "(none), its log ends:\n" + c.containerLog(coordinatorJob, 1500)
				}
				t.Logf("without %s the coordinator Job ended %s; termination message: %s", capability, got, firstLines(msg, 6))
				if len(diffs) > 0 {
					t.Logf("destination differs from the source in %d entries, e.g.:\n%s", len(diffs), treecmp.Format(diffs, 5))
				}
				if want, ok := symptoms[pod+" "+string(capability)]; ok {
					evidence := msg + "\n" + logs + "\n" + treecmp.Format(diffs, len(diffs))
					if got != want.job || !strings.Contains(evidence, want.text) {
						t.Errorf("want the coordinator Job %s and %q in its message, the pods' logs or the differences", want.job, want.text)
					}
				}
			})
		}
	}
}

// symptoms are what breaks without each capability the manifests add today (pod, capability).
var symptoms = map[string]struct {
	job  batchv1.JobConditionType
	text string
}{
	// The walk cannot enter a source root of another owner (mode 0751).
	"coordinator DAC_OVERRIDE": {batchv1.JobFailed, "source /source is not readable: permission denied"},
	// Removing the state directory changes the destination root's mtime, which root may put
	// back on a directory of another owner only with FOWNER.
	"coordinator FOWNER": {batchv1.JobFailed, "putting it back failed: operation not permitted"},
	// rsync keeps numeric owners with chown(2).
	"worker CHOWN": {batchv1.JobFailed, `chown "/dest/`},
	// The worker checks that it can read its source before it asks for work.
	"worker DAC_OVERRIDE": {batchv1.JobFailed, "source /source is not readable: permission denied"},
	// Times and modes of files another user owns (after the chown).
	"worker FOWNER": {batchv1.JobFailed, "failed to set times on"},
	// Without FSETID the kernel silently clears setgid when the file's group is not the
	// process's: the copy "succeeds" and only the comparison sees the lost bit.
	"worker FSETID": {batchv1.JobComplete, `mode "hostile/empty-setgid": 2750 != 0750`},
	// Character devices.
	"worker MKNOD": {batchv1.JobFailed, `mknod "/dest/hostile/special/char-1-3" failed: Operation not permitted`},
}

// renderForInspection renders the manifests with a throwaway namespace, to read them.
func renderForInspection(t *testing.T) []byte {
	t.Helper()
	c := &testCluster{t: t, ns: "inspect", token: "inspect", bin: binary(t)}
	return c.render()
}

// component names a Job of the manifests (coordinator, worker) by its label: the worker
// template has no name of its own.
func component(job *batchv1.Job) string { return job.Labels["app.kubernetes.io/component"] }

// addedCapabilities reads, per Job (coordinator, worker), the capabilities its container adds.
func addedCapabilities(t *testing.T, stream []byte) map[string][]corev1.Capability {
	t.Helper()
	objs, err := kube.Decode(stream)
	if err != nil {
		t.Fatal(err)
	}
	added := map[string][]corev1.Capability{}
	for _, obj := range objs {
		forEachJob(t, obj, func(job *batchv1.Job) {
			for _, ctr := range job.Spec.Template.Spec.Containers {
				sc := ctr.SecurityContext
				if sc == nil || sc.Capabilities == nil {
					continue
				}
				if !containsCapability(sc.Capabilities.Drop, "ALL") {
					t.Errorf("%s container %s does not drop ALL capabilities", component(job), ctr.Name)
				}
				added[component(job)] = append(added[component(job)], sc.Capabilities.Add...)
			}
		})
	}
	return added
}

// withoutCapability removes one added capability from the containers of one Job (by
// component), whether the Job is an object of the stream or the worker template a ConfigMap
// carries.
func withoutCapability(pod string, capability corev1.Capability) edit {
	return func(obj runtime.Object) {
		forEachJob(nil, obj, func(job *batchv1.Job) {
			if component(job) != pod {
				return
			}
			for i := range job.Spec.Template.Spec.Containers {
				sc := job.Spec.Template.Spec.Containers[i].SecurityContext
				if sc == nil || sc.Capabilities == nil {
					continue
				}
				var keep []corev1.Capability
				for _, c := range sc.Capabilities.Add {
					if c != capability {
						keep = append(keep, c)
					}
				}
				sc.Capabilities.Add = keep
			}
		})
	}
}

// forEachJob calls f with a Job object, or with the Job a ConfigMap's value holds (the worker
// template), writing that one back after f. t may be nil in an edit: a template that does not
// decode is then left alone, and apply's server-side validation or the coordinator reports it.
func forEachJob(t *testing.T, obj runtime.Object, f func(*batchv1.Job)) {
	switch o := obj.(type) {
	case *batchv1.Job:
		f(o)
	case *corev1.ConfigMap:
		for key, value := range o.Data {
			job, err := kube.DecodeJob([]byte(value))
			if err != nil {
				continue // not a Job template
			}
			f(job)
			job.APIVersion, job.Kind = "batch/v1", "Job"
			b, err := yaml.Marshal(job)
			if err != nil {
				if t != nil {
					t.Fatal(err)
				}
				continue
			}
			o.Data[key] = string(b)
		}
	}
}

func containsCapability(list []corev1.Capability, c corev1.Capability) bool {
	for _, v := range list {
		if strings.EqualFold(string(v), string(c)) {
			return true
		}
	}
	return false
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}
