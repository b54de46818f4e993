package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// CopyPassLabel marks the coordinator Job of one copy run started from outside the cluster
// (krsync migrate): a rerun with the same value follows that Job instead of starting another.
const CopyPassLabel = "krsync.io/copy-pass"

// copyFieldManager owns the fields Copier applies (server-side apply).
const copyFieldManager = "krsync-migrate"

// copyPoll is how often Copier reads the Jobs it waits for.
const copyPoll = 500 * time.Millisecond

// ErrCopyFailed is returned by WaitCopy when the coordinator Job failed: the copy is
// incomplete or verify found differences (the error says which).
var ErrCopyFailed = errors.New("the copy failed")

// Copier runs the rendered manifests of one named run (coordinator Job, worker Job template
// and their objects) in a namespace from outside the cluster, one pass at a time, and reads
// the outcome the coordinator records. It is krsync migrate's way to copy a claim.
type Copier struct {
	cs    kubernetes.Interface
	dyn   dynamic.Interface
	ns    string
	run   string
	names RunNames
}

// NewCopier builds a Copier for the run named run (krsync manifests --name) in namespace ns.
func NewCopier(cfg *rest.Config, cs kubernetes.Interface, ns, run string) (*Copier, error) {
	if err := ValidateRunName(run); err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	return &Copier{cs: cs, dyn: dyn, ns: ns, run: run, names: NamesFor(run)}, nil
}

// CoordinatorJob is the name of the run's coordinator Job.
func (c *Copier) CoordinatorJob() string { return c.names.Coordinator }

// Start begins the copy p describes, labelled pass; node, when set, pins the coordinator
// (and so, for ReadWriteOnce claims, its workers) to that node, where the source is mounted.
// A coordinator Job of the same pass that has not failed is adopted as it is: it carries its
// own token and journal, and a rerun must not restart it. Any other (an earlier pass, or a
// failed one) is deleted with its workers first.
func (c *Copier) Start(ctx context.Context, p Params, pass, node string) (adopted bool, err error) {
	p.Namespace, p.Name = c.ns, c.run
	job, err := c.cs.BatchV1().Jobs(c.ns).Get(ctx, c.names.Coordinator, metav1.GetOptions{})
	switch {
	case err == nil:
		if cond, done := jobEnd(job); job.Labels[CopyPassLabel] == pass && (!done || cond.Type == batchv1.JobComplete) {
			return true, nil
		}
		if err := c.Delete(ctx); err != nil {
			return false, err
		}
	case !apierrors.IsNotFound(err):
		return false, fmt.Errorf("get Job %s/%s: %w", c.ns, c.names.Coordinator, err)
	}
	files, err := Render(p)
	if err != nil {
		return false, err
	}
	objs, err := Decode(Stream(files))
	if err != nil {
		return false, fmt.Errorf("rendered manifests: %w", err)
	}
	for _, obj := range objs {
		if job, ok := obj.(*batchv1.Job); ok && job.Name == c.names.Coordinator {
			if job.Labels == nil {
				job.Labels = map[string]string{}
			}
			job.Labels[CopyPassLabel] = pass
			if node != "" {
				pinToNode(&job.Spec.Template.Spec, node)
			}
		}
		if err := c.apply(ctx, obj); err != nil {
			return false, err
		}
	}
	return false, nil
}

// apply server-side applies one rendered object in the Copier's namespace.
func (c *Copier) apply(ctx context.Context, obj runtime.Object) error {
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return fmt.Errorf("apply %T: unknown kind: %v", obj, err)
	}
	gvk := gvks[0]
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("apply %s: %w", gvk.Kind, err)
	}
	u := &unstructured.Unstructured{Object: content}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(c.ns)
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	// The manifests hold only namespaced kinds of client-go's scheme, whose plural is the
	// lowercase kind plus "s" (jobs, networkpolicies...): no discovery round trip is needed.
	gvr, _ := meta.UnsafeGuessKindToResource(gvk)
	_, err = c.dyn.Resource(gvr).Namespace(c.ns).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: copyFieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, c.ns, u.GetName(), err)
	}
	return nil
}

// Wait waits for the coordinator Job to end and returns its outcome (the termination
// message, kube.Summary's line). A failed Job is ErrCopyFailed, with the outcome.
func (c *Copier) Wait(ctx context.Context) (string, error) {
	tick := time.NewTicker(copyPoll)
	defer tick.Stop()
	for {
		job, err := c.cs.BatchV1().Jobs(c.ns).Get(ctx, c.names.Coordinator, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("the coordinator Job %s/%s is gone (deleted by someone?); run again to start the copy anew", c.ns, c.names.Coordinator)
		}
		if err != nil {
			return "", fmt.Errorf("get Job %s/%s: %w", c.ns, c.names.Coordinator, err)
		}
		if cond, done := jobEnd(job); done {
			msg := c.outcome(ctx, job)
			if cond.Type == batchv1.JobFailed {
				if msg == "" { // it failed before it could record an outcome
					msg = fmt.Sprintf("%s: %s; its log says why: kubectl -n %s logs job/%s", cond.Reason, cond.Message, c.ns, c.names.Coordinator)
				}
				return msg, fmt.Errorf("%w: Job %s/%s: %s", ErrCopyFailed, c.ns, c.names.Coordinator, msg)
			}
			return msg, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// outcome is the last termination message the coordinator's Pods left, "" when none did.
func (c *Copier) outcome(ctx context.Context, job *batchv1.Job) string {
	pods, err := c.cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/controller-uid=" + string(job.UID)})
	if err != nil {
		return ""
	}
	var last string
	var at time.Time
	for _, p := range pods.Items {
		for _, st := range p.Status.ContainerStatuses {
			if t := st.State.Terminated; t != nil && t.Message != "" && !t.FinishedAt.Time.Before(at) {
				last, at = strings.TrimSpace(t.Message), t.FinishedAt.Time
			}
		}
	}
	return last
}

// Delete removes everything a copy run made (the Jobs with their Pods first, then the
// objects of the manifests) and waits for the Jobs to be gone, so the next run can reuse
// their names. What is already gone is fine.
func (c *Copier) Delete(ctx context.Context) error {
	// Foreground: a Job is gone only once its Pods are, so no worker of this run still
	// writes to the destination when the next run starts.
	fg := metav1.DeletePropagationForeground
	jobOpts := metav1.DeleteOptions{PropagationPolicy: &fg}
	opts := metav1.DeleteOptions{}
	n := c.names
	for _, name := range []string{n.Coordinator, n.Worker} {
		if err := c.cs.BatchV1().Jobs(c.ns).Delete(ctx, name, jobOpts); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete Job %s/%s: %w", c.ns, name, err)
		}
	}
	deletes := []struct {
		kind string
		del  func() error
	}{
		{"Service", func() error { return c.cs.CoreV1().Services(c.ns).Delete(ctx, n.Coordinator, opts) }},
		{"NetworkPolicy", func() error { return c.cs.NetworkingV1().NetworkPolicies(c.ns).Delete(ctx, n.Coordinator, opts) }},
		{"ConfigMap", func() error { return c.cs.CoreV1().ConfigMaps(c.ns).Delete(ctx, n.Worker, opts) }},
		{"Secret", func() error { return c.cs.CoreV1().Secrets(c.ns).Delete(ctx, n.Token, opts) }},
		{"RoleBinding", func() error { return c.cs.RbacV1().RoleBindings(c.ns).Delete(ctx, n.Coordinator, opts) }},
		{"Role", func() error { return c.cs.RbacV1().Roles(c.ns).Delete(ctx, n.Coordinator, opts) }},
		{"ServiceAccount", func() error { return c.cs.CoreV1().ServiceAccounts(c.ns).Delete(ctx, n.Coordinator, opts) }},
	}
	for _, d := range deletes {
		if err := d.del(); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s of the copy in %s: %w", d.kind, c.ns, err)
		}
	}
	tick := time.NewTicker(copyPoll)
	defer tick.Stop()
	for _, name := range []string{n.Coordinator, n.Worker} {
		for {
			_, err := c.cs.BatchV1().Jobs(c.ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if err != nil {
				return fmt.Errorf("get Job %s/%s: %w", c.ns, name, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	}
	return nil
}

// IsCopyPod says whether a Pod belongs to a copy run (coordinator or worker): krsync's own
// Pods mount the source too, and must not count as the application's.
func IsCopyPod(p *corev1.Pod) bool {
	return p.Labels["app.kubernetes.io/name"] == "krsync"
}
