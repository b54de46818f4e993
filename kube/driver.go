package kube

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/krsync/krsync/leaseapi"
)

// Coordinator is what the driver needs of a coordinator: its progress, to size the worker
// Job, and a way to hand back at once the leases of a worker Pod that is gone.
type Coordinator interface {
	ReleaseWorker(name string) int
	Status() leaseapi.Status
}

// scaleEvery is how often the driver compares the work waiting with the Job's parallelism.
const scaleEvery = time.Second

// Driver creates and drives the worker Job of one coordinator.
type Driver struct {
	cs   kubernetes.Interface
	opts Options
	log  zerolog.Logger
	ns   string
	self *corev1.Pod // nil outside a Pod
	// template is the worker Job to create, complete but for its parallelism.
	template *batchv1.Job
	// job is the created (or adopted) worker Job, once Run has made it. Run sets it once;
	// jobMu orders that write before WorkerJob's reads, which may come from other goroutines.
	job   *batchv1.Job
	jobMu sync.Mutex
	// volumes name the data behind the workers' source and dest claims (VolumeIdentity).
	volumes []string
}

// Connect builds a client from opts (in-cluster or --kubeconfig) and prepares a Driver.
func Connect(ctx context.Context, opts Options, log zerolog.Logger) (*Driver, error) {
	cs, _, ns, err := Clientset(opts.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return NewDriver(ctx, cs, ns, opts, log)
}

// NewDriver checks the coordinator's rights, reads its own Pod and the claims, and builds the
// worker Job from the template. defaultNamespace applies when opts has no --pod-namespace.
func NewDriver(ctx context.Context, cs kubernetes.Interface, defaultNamespace string, opts Options, log zerolog.Logger) (*Driver, error) {
	if opts.Parallelism < 1 {
		return nil, fmt.Errorf("--parallelism %d: want at least 1", opts.Parallelism)
	}
	d := &Driver{cs: cs, opts: opts, log: log, ns: opts.PodNamespace}
	if d.ns == "" {
		d.ns = defaultNamespace
	}
	data, err := os.ReadFile(opts.WorkerTemplate)
	if err != nil {
		return nil, fmt.Errorf("--worker-template: %w", err)
	}
	tmpl, err := DecodeJob(data)
	if err != nil {
		return nil, fmt.Errorf("--worker-template %s: %w", opts.WorkerTemplate, err)
	}
	// The worker Job's name comes from the coordinator's own Pod (workerJobName), and the
	// rights to check name it: read the Pod first, and let a refused read be explained by
	// checkAccess, which names every missing verb.
	if opts.PodName != "" {
		d.self, err = cs.CoreV1().Pods(d.ns).Get(ctx, opts.PodName, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsForbidden(err) {
				if aerr := d.checkAccess(ctx, workerJobName(tmpl, nil)); aerr != nil {
					return nil, aerr
				}
			}
			return nil, fmt.Errorf("get own Pod %s/%s: %w", d.ns, opts.PodName, err)
		}
	} else {
		log.Warn().Msg("no --pod-name (KRSYNC_POD_NAME): the worker Job gets no owner, so deleting the coordinator will not delete it")
	}
	tmpl.Name = workerJobName(tmpl, d.self)
	if err := d.checkAccess(ctx, tmpl.Name); err != nil {
		return nil, err
	}
	d.template, err = d.workerJob(ctx, tmpl)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// VolumeIdentity names the volumes behind the workers' source and destination claims (their
// PersistentVolumes, or the claims' UIDs while unbound), e.g. "source=pv/pv-1 dest=pv/pv-2".
// The coordinator makes it part of its journal's identity: inside a Pod the paths are
// always /source and /dest, so they alone cannot tell one copy from another.
func (d *Driver) VolumeIdentity() string { return strings.Join(d.volumes, " ") }

// Namespace is where the worker Job lives.
func (d *Driver) Namespace() string { return d.ns }

// WorkerJob is the Job the driver creates (before Run) or created (after).
func (d *Driver) WorkerJob() *batchv1.Job {
	d.jobMu.Lock()
	defer d.jobMu.Unlock()
	if d.job != nil {
		return d.job.DeepCopy()
	}
	return d.template.DeepCopy()
}

// Run creates the worker Job (or adopts the one a previous coordinator Pod of this run left),
// raises its parallelism as partitions appear, releases the leases of worker Pods that are
// deleted, evicted or fail, and returns nil when ctx ends. It returns an error when the Job
// fails or is deleted, or the API refuses it something.
func (d *Driver) Run(ctx context.Context, c Coordinator) error {
	job, err := d.ensureJob(ctx, wantWorkers(c.Status(), d.opts.Parallelism, 0))
	if err != nil {
		return err
	}
	d.jobMu.Lock()
	d.job = job
	d.jobMu.Unlock()
	d.log.Info().Str("job", job.Name).Int32("parallelism", parallelism(job)).Int("max_parallelism", d.opts.Parallelism).Msg("worker Job ready")

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.watchPods(gctx, c) })
	g.Go(func() error { return d.watchJob(gctx) })
	g.Go(func() error { return d.scale(gctx, c) })
	err = g.Wait()
	if ctx.Err() != nil {
		return nil // ended by the caller: the coordinator is done
	}
	return err
}

// scale raises the Job's parallelism to the work waiting, up to --parallelism. It never
// lowers it: the Job controller would kill running workers to do so.
func (d *Driver) scale(ctx context.Context, c Coordinator) error {
	tick := time.NewTicker(scaleEvery)
	defer tick.Stop()
	current := parallelism(d.job)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		want := wantWorkers(c.Status(), d.opts.Parallelism, current)
		if want <= current {
			continue
		}
		patch := fmt.Appendf(nil, `{"spec":{"parallelism":%d}}`, want)
		_, err := d.cs.BatchV1().Jobs(d.ns).Patch(ctx, d.job.Name, "application/merge-patch+json", patch, metav1.PatchOptions{})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("patch Job %s/%s parallelism to %d: %w", d.ns, d.job.Name, want, err)
		}
		d.log.Info().Str("job", d.job.Name).Int32("parallelism", want).Msg("raised the worker Job's parallelism")
		d.event(ctx, corev1.EventTypeNormal, "Scaled", fmt.Sprintf("parallelism raised from %d to %d as partitions appeared", current, want))
		current = want
	}
}

// wantWorkers is the parallelism for the work waiting: partitions pending or leased, at
// least 1 (a worker waits for the first partition while the walk goes on), at most limit,
// and never below current.
func wantWorkers(st leaseapi.Status, limit int, current int32) int32 {
	want := min(max(st.Partitions.Pending+st.Partitions.Leased, 1), int64(limit))
	return int32(max(want, int64(current)))
}

func parallelism(job *batchv1.Job) int32 {
	if job.Spec.Parallelism == nil {
		return 1
	}
	return *job.Spec.Parallelism
}

// ensureJob creates the worker Job with the given parallelism. A Job of that name that a
// previous coordinator Pod created and that still runs is adopted (this Pod becomes its
// owner); one that has finished is replaced.
func (d *Driver) ensureJob(ctx context.Context, want int32) (*batchv1.Job, error) {
	jobs := d.cs.BatchV1().Jobs(d.ns)
	name := d.template.Name
	for attempt := 0; attempt < 2; attempt++ {
		job := d.template.DeepCopy()
		job.Spec.Parallelism = &want
		created, err := jobs.Create(ctx, job, metav1.CreateOptions{})
		if err == nil {
			d.log.Info().Str("job", name).Int32("parallelism", want).Msg("created the worker Job")
			return created, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create Job %s/%s: %w", d.ns, name, err)
		}
		existing, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // deleted in between: create again
		}
		if err != nil {
			return nil, fmt.Errorf("get Job %s/%s: %w", d.ns, name, err)
		}
		if !jobFinished(existing) {
			return d.adopt(ctx, existing)
		}
		d.log.Info().Str("job", name).Msg("replacing the worker Job a previous run left finished")
		if err := d.deleteJob(ctx, existing); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("create Job %s/%s: it keeps coming back; delete it and retry", d.ns, name)
}

// adopt makes this Pod the owner of a running worker Job a previous coordinator Pod created.
func (d *Driver) adopt(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	if d.self == nil || ownedBy(job, d.self.UID) {
		return job, nil
	}
	refs := append([]metav1.OwnerReference(nil), d.template.OwnerReferences...)
	patch, err := jsonMergePatch(map[string]any{"metadata": map[string]any{"ownerReferences": refs}})
	if err != nil {
		return nil, err
	}
	adopted, err := d.cs.BatchV1().Jobs(d.ns).Patch(ctx, job.Name, "application/merge-patch+json", patch, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("adopt Job %s/%s: patch its owner: %w", d.ns, job.Name, err)
	}
	d.log.Info().Str("job", job.Name).Msg("adopted the running worker Job of a previous coordinator Pod")
	return adopted, nil
}

// deleteJob deletes job and its Pods and waits until it is gone.
func (d *Driver) deleteJob(ctx context.Context, job *batchv1.Job) error {
	bg := metav1.DeletePropagationBackground
	err := d.cs.BatchV1().Jobs(d.ns).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &bg,
		Preconditions:     &metav1.Preconditions{UID: &job.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete Job %s/%s: %w", d.ns, job.Name, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := d.cs.BatchV1().Jobs(d.ns).Get(ctx, job.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && got.UID != job.UID) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("get Job %s/%s: %w", d.ns, job.Name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("delete Job %s/%s: still there after a minute (finalizers?)", d.ns, job.Name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // polling the deletion
		}
	}
}

// StopWorkers deletes the worker Job and its Pods: the coordinator gave up, and workers
// left running would only retry a coordinator that is gone.
func (d *Driver) StopWorkers(ctx context.Context) error {
	if d.job == nil {
		return nil
	}
	bg := metav1.DeletePropagationBackground
	err := d.cs.BatchV1().Jobs(d.ns).Delete(ctx, d.job.Name, metav1.DeleteOptions{
		PropagationPolicy: &bg,
		Preconditions:     &metav1.Preconditions{UID: &d.job.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete Job %s/%s: %w", d.ns, d.job.Name, err)
	}
	return nil
}

func ownedBy(job *batchv1.Job, uid types.UID) bool {
	for _, r := range job.OwnerReferences {
		if r.UID == uid {
			return true
		}
	}
	return false
}

// jobFinished says whether the Job has its Complete or Failed condition.
func jobFinished(job *batchv1.Job) bool {
	_, done := jobEnd(job)
	return done
}

// jobEnd returns the Complete or Failed condition of job.
func jobEnd(job *batchv1.Job) (batchv1.JobCondition, bool) {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c, true
		}
	}
	return batchv1.JobCondition{}, false
}
