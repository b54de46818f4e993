package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// workerJob completes the template: namespace, owner, claims, what the run shares (inherit,
// inheritRun) and, for claims only one node can mount, the coordinator's node.
func (d *Driver) workerJob(ctx context.Context, tmpl *batchv1.Job) (*batchv1.Job, error) {
	job := tmpl.DeepCopy()
	job.Namespace = d.ns
	job.ResourceVersion, job.UID = "", ""
	job.Spec.Completions = nil // a work-queue Job: done when a worker exits 0 and all have exited
	spec := &job.Spec.Template.Spec
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("--worker-template: the Job has no container")
	}
	if d.self != nil {
		job.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Pod", Name: d.self.Name, UID: d.self.UID,
		}}
		inherit(spec, d.self)
		inheritRun(job, d.self)
	}
	claims := map[string]string{SourceVolume: d.opts.SourcePVC, DestVolume: d.opts.DestPVC}
	for _, vol := range []string{SourceVolume, DestVolume} {
		claim := claims[vol]
		if claim == "" {
			claim = d.ownClaim(vol)
		}
		if claim == "" {
			claim = templateClaim(spec, vol)
		}
		if claim == "" {
			return nil, fmt.Errorf("no claim for the workers' volume %q: set --%s-pvc or give the coordinator's Pod a volume %q", vol, vol, vol)
		}
		if err := setClaim(spec, vol, claim); err != nil {
			return nil, fmt.Errorf("--worker-template: %w", err)
		}
		claims[vol] = claim
	}
	node, err := d.pinNode(ctx, claims)
	if err != nil {
		return nil, err
	}
	if node != "" {
		pinToNode(spec, node)
		d.log.Info().Str("node", node).Msg("a claim allows one node only (ReadWriteOnce): the workers run on the coordinator's node")
	}
	return job, nil
}

// ownMount is the coordinator container's mount of the volume vol, nil outside a Pod or
// without one.
func (d *Driver) ownMount(vol string) *corev1.VolumeMount {
	if d.self == nil {
		return nil
	}
	if own := ownContainer(d.self); own != nil {
		return mountOf(own, vol)
	}
	return nil
}

// ownClaim is the claim of the coordinator Pod's volume named vol.
func (d *Driver) ownClaim(vol string) string {
	if d.self == nil {
		return ""
	}
	return templateClaim(&d.self.Spec, vol)
}

func templateClaim(spec *corev1.PodSpec, vol string) string {
	for _, v := range spec.Volumes {
		if v.Name == vol && v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	return ""
}

func setClaim(spec *corev1.PodSpec, vol, claim string) error {
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.Name != vol {
			continue
		}
		if v.PersistentVolumeClaim == nil {
			return fmt.Errorf("volume %q is not a persistentVolumeClaim", vol)
		}
		v.PersistentVolumeClaim.ClaimName = claim
		return nil
	}
	return fmt.Errorf("the Pod template has no volume %q", vol)
}

// pinNode reads the claims' access modes and returns the node the workers must run on, or "".
// A claim the workers mount as the coordinator does (source read-only, dest read-write) that
// no mode lets several nodes mount is ReadWriteOnce: such a volume is attached to one node,
// where every Pod using it must run (the coordinator's). ReadWriteOncePod allows one Pod
// only, so the coordinator and its workers cannot share it at all.
func (d *Driver) pinNode(ctx context.Context, claims map[string]string) (string, error) {
	var pinned []string
	for _, vol := range []string{SourceVolume, DestVolume} {
		name := claims[vol]
		pvc, err := d.cs.CoreV1().PersistentVolumeClaims(d.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("get PersistentVolumeClaim %s/%s (%s): %w", d.ns, name, vol, err)
		}
		id := volumeIdentity(vol, pvc)
		if m := d.ownMount(vol); m != nil && (m.SubPath != "" || m.SubPathExpr != "") {
			// Another directory of the same volume is other data.
			id += fmt.Sprintf("@subPath=%q", m.SubPath+m.SubPathExpr)
		}
		d.volumes = append(d.volumes, id)
		modes := pvc.Status.AccessModes
		if len(modes) == 0 {
			modes = pvc.Spec.AccessModes
		}
		if slices.Contains(modes, corev1.ReadWriteOncePod) && len(modes) == 1 {
			return "", fmt.Errorf("claim %s (%s) is ReadWriteOncePod: only one Pod may mount it, but the coordinator and every worker mount it; use ReadWriteOnce (workers then run on the coordinator's node) or ReadWriteMany", name, vol)
		}
		shared := slices.Contains(modes, corev1.ReadWriteMany) || (vol == SourceVolume && slices.Contains(modes, corev1.ReadOnlyMany))
		if !shared {
			pinned = append(pinned, name)
		}
	}
	if len(pinned) == 0 {
		return "", nil
	}
	node := d.opts.NodeName
	if node == "" && d.self != nil {
		node = d.self.Spec.NodeName
	}
	if node == "" {
		return "", fmt.Errorf("claims %v allow one node only (ReadWriteOnce), and the coordinator's node is unknown: set --node-name (KRSYNC_NODE_NAME from spec.nodeName)", pinned)
	}
	return node, nil
}

// pinToNode adds a required node affinity to node by name (matchFields metadata.name) to
// every node selector term of spec, keeping the template's own affinity: terms are ORed, the
// requirements of one term ANDed.
func pinToNode(spec *corev1.PodSpec, node string) {
	req := corev1.NodeSelectorRequirement{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	sel := na.RequiredDuringSchedulingIgnoredDuringExecution
	if len(sel.NodeSelectorTerms) == 0 {
		sel.NodeSelectorTerms = []corev1.NodeSelectorTerm{{}}
	}
	for i := range sel.NodeSelectorTerms {
		sel.NodeSelectorTerms[i].MatchFields = append(sel.NodeSelectorTerms[i].MatchFields, req)
	}
}

func jsonMergePatch(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	return b, nil
}

// volumeIdentity names the data behind a claim: its PersistentVolume when bound (a claim
// deleted and made again on the same volume still names the same data), else the claim's UID.
func volumeIdentity(vol string, pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Spec.VolumeName != "" {
		return fmt.Sprintf("%s=pv/%s", vol, pvc.Spec.VolumeName)
	}
	return fmt.Sprintf("%s=claim/%s/%s@%s", vol, pvc.Namespace, pvc.Name, pvc.UID)
}
