package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/krsync/krsync/kube"
)

// Config is one migration, as krsync migrate's flags give it.
type Config struct {
	Namespace string
	SourcePVC string
	// DestPVC is the new claim; empty with DestStorageClass: SourcePVC-DestStorageClass.
	DestPVC string
	// DestStorageClass, when set, has the new claim created in that class (if missing).
	DestStorageClass string
	// DestSize is the new claim's size, at least the old one's; nil: the old one's.
	DestSize *resource.Quantity
	// Copy is the coordinator's configuration (image, parallelism, options); the claims,
	// mirror and verify are set per pass.
	Copy kube.Params
	// NoWarmCopy skips the copy while the application runs.
	NoWarmCopy bool
	// OverwriteDest lets the copies delete what an existing new claim holds; without it a
	// claim krsync did not create (nor migrate from) must be empty.
	OverwriteDest bool
	// Timeout bounds each wait for Pods to go or to become ready.
	Timeout time.Duration
}

// Dest is the name of the new claim.
func (c Config) Dest() string {
	if c.DestPVC != "" {
		return c.DestPVC
	}
	name := c.SourcePVC + "-" + c.DestStorageClass
	if len(name) > validation.DNS1123SubdomainMaxLength {
		name = strings.TrimRight(name[:validation.DNS1123SubdomainMaxLength], "-.")
	}
	return name
}

// CopyRun names the copy's objects (krsync manifests --name): one run per new claim, so
// migrations to different claims can share a namespace, and a rerun finds its own Jobs.
func (c Config) CopyRun() string {
	sum := sha256.Sum256([]byte(c.Namespace + "/" + c.Dest()))
	return "migrate-" + hex.EncodeToString(sum[:4])
}

// Validate checks the flags before any API call (an empty Namespace is the kubeconfig's).
func (c Config) Validate() error {
	if c.SourcePVC == "" {
		return fmt.Errorf("--source-pvc is required: the claim to move away from")
	}
	if c.DestPVC == "" && c.DestStorageClass == "" {
		return fmt.Errorf("give --dest-pvc NEW (an existing claim, or the name of the one to create with --dest-storage-class) or --dest-storage-class SC")
	}
	if c.Dest() == c.SourcePVC {
		return fmt.Errorf("--dest-pvc %q is the source claim: give another name", c.DestPVC)
	}
	for _, n := range []struct{ flag, v string }{{"--source-pvc", c.SourcePVC}, {"--dest-pvc", c.Dest()}} {
		if errs := validation.IsDNS1123Subdomain(n.v); len(errs) > 0 {
			return fmt.Errorf("%s %q: not a valid claim name: %s", n.flag, n.v, strings.Join(errs, "; "))
		}
	}
	if c.DestSize != nil && c.DestStorageClass == "" {
		return fmt.Errorf("--dest-size applies to the claim --dest-storage-class creates: give --dest-storage-class too")
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout %s: want a positive duration", c.Timeout)
	}
	return nil
}

// Plan is what a migration will do.
type Plan struct {
	Namespace string
	Source    *corev1.PersistentVolumeClaim
	// DestClaimed says why the new claim's contents may be replaced without the copy's
	// check that it is empty (created here, --overwrite-dest, migrated from); "" when not.
	DestClaimed string
	// Dest is the new claim: the existing one, or the one to create (CreateDest).
	Dest       *corev1.PersistentVolumeClaim
	CreateDest bool
	Workloads  []Workload
	// Replicas are the workloads' replica counts now (the ones recorded when scaled down).
	Replicas map[Workload]int32
	// Node is where running Pods mount a source only one node may mount (ReadWriteOnce):
	// the warm copy must run there. Empty otherwise.
	Node string
	// WarmCopySkipped says why no copy runs while the application runs; "" when one does.
	WarmCopySkipped string
	// CopyRun names the copy's objects (Config.CopyRun).
	CopyRun string
}

// volumeClaims are the claims a Pod spec mounts, by volume name.
func claimsOf(spec *corev1.PodSpec) map[string]string {
	m := map[string]string{}
	for _, v := range spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			m[v.Name] = v.PersistentVolumeClaim.ClaimName
		}
	}
	return m
}

func mounts(spec *corev1.PodSpec, claim string) bool {
	for _, c := range claimsOf(spec) {
		if c == claim {
			return true
		}
	}
	return false
}

// MakePlan reads the claims and the workloads and says what a migration will do. It
// changes nothing.
func MakePlan(ctx context.Context, cs kubernetes.Interface, cfg Config) (*Plan, error) {
	ns := cfg.Namespace
	src, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, cfg.SourcePVC, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("claim %s not found in namespace %s (--source-pvc, --namespace)", cfg.SourcePVC, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("get claim %s/%s: %w", ns, cfg.SourcePVC, err)
	}
	p := &Plan{Namespace: ns, Source: src, Replicas: map[Workload]int32{}, CopyRun: cfg.CopyRun()}
	if err := p.planDest(ctx, cs, cfg); err != nil {
		return nil, err
	}
	if err := p.findWorkloads(ctx, cs, cfg.SourcePVC); err != nil {
		return nil, err
	}
	if err := p.checkPods(ctx, cs, cfg); err != nil {
		return nil, err
	}
	p.WarmCopySkipped = warmCopySkipped(cfg, src)
	if p.Node, err = sourceNode(ctx, cs, ns, src); err != nil {
		return nil, err
	}
	return p, nil
}

// size is a claim's size: its capacity once bound, else its request.
func size(pvc *corev1.PersistentVolumeClaim) resource.Quantity {
	if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
		return q
	}
	return pvc.Spec.Resources.Requests[corev1.ResourceStorage]
}

// planDest finds the new claim, or describes the one to create.
func (p *Plan) planDest(ctx context.Context, cs kubernetes.Interface, cfg Config) error {
	name := cfg.Dest()
	dst, err := cs.CoreV1().PersistentVolumeClaims(p.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		p.Dest = dst
		if want, got := size(p.Source), size(dst); got.Cmp(want) < 0 {
			return fmt.Errorf("claim %s is %s, smaller than %s's %s: give a larger claim", name, got.String(), p.Source.Name, want.String())
		}
		switch st, _ := stateOf(p.Source); {
		case cfg.OverwriteDest:
			p.DestClaimed = "--overwrite-dest"
		case st != nil && st.Source == name && st.Phase == Done:
			p.DestClaimed = "it is the claim " + p.Source.Name + " was migrated from"
		}
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get claim %s/%s: %w", p.Namespace, name, err)
	case cfg.DestStorageClass == "":
		return fmt.Errorf("claim %s not found in namespace %s: create it, or give --dest-storage-class to have krsync create it", name, p.Namespace)
	}
	want := size(p.Source)
	if cfg.DestSize != nil {
		if cfg.DestSize.Cmp(want) < 0 {
			return fmt.Errorf("--dest-size %s is smaller than %s's %s", cfg.DestSize.String(), p.Source.Name, want.String())
		}
		want = *cfg.DestSize
	}
	class := cfg.DestStorageClass
	p.CreateDest = true
	p.DestClaimed = "krsync creates it"
	p.Dest = &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "krsync-migrate"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      slices.Clone(p.Source.Spec.AccessModes),
			VolumeMode:       p.Source.Spec.VolumeMode,
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: want}},
		},
	}
	return nil
}

// stsTemplateClaim matches the claims a StatefulSet makes from a volumeClaimTemplate:
// TEMPLATE-STATEFULSET-ORDINAL.
func stsTemplateClaim(sts *appsv1.StatefulSet, claim string) (string, bool) {
	for _, t := range sts.Spec.VolumeClaimTemplates {
		re := regexp.MustCompile(`^` + regexp.QuoteMeta(t.Name+"-"+sts.Name+"-") + `[0-9]+$`)
		if re.MatchString(claim) {
			return t.Name, true
		}
	}
	return "", false
}

// findWorkloads lists the Deployments, StatefulSets, DaemonSets and CronJobs whose Pod
// template mounts claim, with their replica counts.
func (p *Plan) findWorkloads(ctx context.Context, cs kubernetes.Interface, claim string) error {
	ns := p.Namespace
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list Deployments in %s: %w", ns, err)
	}
	for _, d := range deps.Items {
		if mounts(&d.Spec.Template.Spec, claim) {
			p.add(Workload{"Deployment", d.Name}, replicasOf(d.Annotations, d.Spec.Replicas))
		}
	}
	stss, err := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list StatefulSets in %s: %w", ns, err)
	}
	for _, s := range stss.Items {
		if tmpl, ok := stsTemplateClaim(&s, claim); ok {
			return volumeClaimTemplateError(&s, tmpl, claim)
		}
		if mounts(&s.Spec.Template.Spec, claim) {
			p.add(Workload{"StatefulSet", s.Name}, replicasOf(s.Annotations, s.Spec.Replicas))
		}
	}
	dss, err := cs.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list DaemonSets in %s: %w", ns, err)
	}
	for _, d := range dss.Items {
		if mounts(&d.Spec.Template.Spec, claim) {
			p.add(Workload{"DaemonSet", d.Name}, d.Status.DesiredNumberScheduled)
		}
	}
	cjs, err := cs.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list CronJobs in %s: %w", ns, err)
	}
	for _, c := range cjs.Items {
		if mounts(&c.Spec.JobTemplate.Spec.Template.Spec, claim) {
			p.add(Workload{"CronJob", c.Name}, 0)
		}
	}
	return nil
}

func (p *Plan) add(w Workload, replicas int32) {
	p.Workloads = append(p.Workloads, w)
	p.Replicas[w] = replicas
}

// replicasOf is the replica count to restore: the recorded one when scaled down already.
func replicasOf(annotations map[string]string, replicas *int32) int32 {
	var n int32
	if _, err := fmt.Sscan(annotations[AnnoReplicas], &n); err == nil {
		return n
	}
	if replicas == nil {
		return 1
	}
	return *replicas
}

// volumeClaimTemplateError says what the operator must do for a claim a StatefulSet made
// from its volumeClaimTemplate: Kubernetes forbids changing the templates, and the Pods
// always claim TEMPLATE-STATEFULSET-ORDINAL.
func volumeClaimTemplateError(sts *appsv1.StatefulSet, tmpl, claim string) error {
	return fmt.Errorf("claim %s comes from StatefulSet %s's volumeClaimTemplate %q, which Kubernetes cannot repoint: "+
		"scale %s to 0, copy each ordinal's claim with krsync manifests --mirror --verify to NEWTEMPLATE-%s-ORDINAL, "+
		"delete the StatefulSet (kubectl delete statefulset %s --cascade=orphan; first make sure its persistentVolumeClaimRetentionPolicy keeps the claims) and apply it again with the template renamed NEWTEMPLATE "+
		"(README, Migrate a volume: StatefulSet volumeClaimTemplates)",
		claim, sts.Name, tmpl, sts.Name, sts.Name, sts.Name)
}

// checkPods finds the Pods that mount the old claim: one without a controller is a workload
// of its own, one whose controller krsync does not drive cannot be brought back on the new
// claim; and nothing may mount the new claim but krsync's copy.
func (p *Plan) checkPods(ctx context.Context, cs kubernetes.Interface, cfg Config) error {
	pods, err := cs.CoreV1().Pods(p.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list Pods in %s: %w", p.Namespace, err)
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if kube.IsCopyPod(pod) || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if mounts(&pod.Spec, cfg.Dest()) {
			return fmt.Errorf("Pod %s mounts the destination claim %s: it must be unused until the switch; stop it or choose another claim", pod.Name, cfg.Dest())
		}
		if !mounts(&pod.Spec, cfg.SourcePVC) {
			continue
		}
		switch ref := metav1.GetControllerOf(pod); {
		case ref == nil:
			p.add(Workload{"Pod", pod.Name}, 1)
		case p.owned(ctx, cs, pod) == nil:
			return fmt.Errorf("Pod %s mounts %s and its controller %s %s is not a Deployment, StatefulSet, DaemonSet or CronJob, so krsync cannot stop it and bring it back on %s: "+
				"stop it yourself and run krsync migrate again", pod.Name, cfg.SourcePVC, ref.Kind, ref.Name, cfg.Dest())
		}
	}
	return nil
}

// owned returns the planned workload a Pod belongs to (through its ReplicaSet or Job), or nil.
func (p *Plan) owned(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) *Workload {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return nil
	}
	kind, name := ref.Kind, ref.Name
	switch kind {
	case "ReplicaSet":
		rs, err := cs.AppsV1().ReplicaSets(p.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		if up := metav1.GetControllerOf(rs); up != nil {
			kind, name = up.Kind, up.Name
		}
	case "Job":
		job, err := cs.BatchV1().Jobs(p.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		if up := metav1.GetControllerOf(job); up != nil {
			kind, name = up.Kind, up.Name
		}
	}
	for _, w := range p.Workloads {
		if w.Kind == kind && w.Name == name {
			return &w
		}
	}
	return nil
}

// warmCopySkipped says why the copy cannot run next to the application, "" when it can.
func warmCopySkipped(cfg Config, src *corev1.PersistentVolumeClaim) string {
	switch {
	case cfg.NoWarmCopy:
		return "--no-warm-copy"
	case slices.Contains(src.Spec.AccessModes, corev1.ReadWriteOncePod):
		return "the source is ReadWriteOncePod: only the application's Pod may mount it"
	}
	return ""
}

// sourceNode is the node where a running Pod mounts a ReadWriteOnce source: the warm copy
// must run there. "" when any node may mount the source, or no Pod mounts it.
func sourceNode(ctx context.Context, cs kubernetes.Interface, ns string, src *corev1.PersistentVolumeClaim) (string, error) {
	if !slices.Contains(src.Spec.AccessModes, corev1.ReadWriteOnce) ||
		slices.Contains(src.Spec.AccessModes, corev1.ReadWriteMany) || slices.Contains(src.Spec.AccessModes, corev1.ReadOnlyMany) {
		return "", nil
	}
	pods, err := podsMounting(ctx, cs, ns, src.Name)
	if err != nil {
		return "", err
	}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			return p.Spec.NodeName, nil
		}
	}
	return "", nil
}

// Print writes the plan for a human.
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "migrate claim %s to %s in namespace %s\n", p.Source.Name, p.Dest.Name, p.Namespace)
	q := size(p.Dest)
	if p.CreateDest {
		fmt.Fprintf(w, "  create claim %s: storage class %s, %s, %s\n", p.Dest.Name, *p.Dest.Spec.StorageClassName, q.String(), modes(p.Dest.Spec.AccessModes))
	} else {
		if p.DestClaimed != "" {
			fmt.Fprintf(w, "  claim %s exists: %s, %s (it becomes an exact copy of %s: what else it holds is deleted; %s)\n", p.Dest.Name, q.String(), modes(p.Dest.Spec.AccessModes), p.Source.Name, p.DestClaimed)
		} else {
			fmt.Fprintf(w, "  claim %s exists: %s, %s (it becomes an exact copy of %s; the copy starts only if it is empty: --overwrite-dest to replace what it holds)\n", p.Dest.Name, q.String(), modes(p.Dest.Spec.AccessModes), p.Source.Name)
		}
	}
	if p.WarmCopySkipped == "" {
		where := ""
		if p.Node != "" {
			where = " on node " + p.Node + " (the source is ReadWriteOnce)"
		}
		fmt.Fprintf(w, "  warm copy while the application runs%s: %s mounted read-only\n", where, p.Source.Name)
	} else {
		fmt.Fprintf(w, "  no warm copy: %s\n", p.WarmCopySkipped)
	}
	if len(p.Workloads) == 0 {
		fmt.Fprintf(w, "  no workload mounts %s\n", p.Source.Name)
	}
	for _, wl := range p.Workloads {
		switch wl.Kind {
		case "Deployment", "StatefulSet":
			fmt.Fprintf(w, "  %s: scale %d -> 0, point its volume at %s, scale back to %d\n", wl, p.Replicas[wl], p.Dest.Name, p.Replicas[wl])
		case "DaemonSet":
			fmt.Fprintf(w, "  %s: pause (%d pods; nodeSelector %s), point its volume at %s, resume\n", wl, p.Replicas[wl], pausedLabel, p.Dest.Name)
		case "CronJob":
			fmt.Fprintf(w, "  %s: suspend and wait for its running Jobs, point its volume at %s, restore suspend\n", wl, p.Dest.Name)
		case "Pod":
			fmt.Fprintf(w, "  %s (no controller): record it on %s, delete it, create it again on %s\n", wl, p.Dest.Name, p.Dest.Name)
		}
	}
	fmt.Fprintf(w, "  downtime: wait for the Pods to go, final --mirror pass, verify, switch, wait until ready\n")
	fmt.Fprintf(w, "  the copies run as Jobs %s and %s\n", kube.NamesFor(p.CopyRun).Coordinator, kube.NamesFor(p.CopyRun).Worker)
	fmt.Fprintf(w, "  %s is kept; krsync migrate --rollback puts the workloads back on it\n", p.Source.Name)
}

func modes(m []corev1.PersistentVolumeAccessMode) string {
	s := make([]string, len(m))
	for i, a := range m {
		s[i] = string(a)
	}
	return strings.Join(s, ",")
}
