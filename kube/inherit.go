package kube

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// The coordinator's own Pod is the one place a run is configured (docs/design.md, "One place
// to configure both pods"): the worker Job takes from it, wherever the template leaves a field
// out, the image, the scheduling (nodeSelector, tolerations, affinity, priorityClassName), the
// Pod's securityContext, the pull secrets, the containers' resources, the variables both
// roles read and the subPaths of the source and destination mounts. A kustomize patch or a hand edit of the coordinator Job therefore reaches the
// workers too, which a patch of the template (a YAML string in a ConfigMap) could not.

// sharedEnv are the krsync variables both roles read; every variable without the KRSYNC_
// prefix (a proxy, TZ, GOMEMLIMIT...) is shared too. The others belong to one role.
var sharedEnv = []string{"KRSYNC_TOKEN", "KRSYNC_LOG_LEVEL", "KRSYNC_LOG_FORMAT"}

// isSharedEnv says whether the workers get the coordinator's variable name.
func isSharedEnv(name string) bool {
	return !strings.HasPrefix(name, "KRSYNC_") || slices.Contains(sharedEnv, name)
}

// inherit completes the worker Pod spec from the coordinator's Pod, field by field, where the
// template has nothing of its own. An empty value (nodeSelector: {}, affinity: {}) counts as
// nothing: the template needs no placeholder to stay out of the way.
func inherit(spec *corev1.PodSpec, self *corev1.Pod) {
	own := ownContainer(self)
	if len(spec.NodeSelector) == 0 {
		spec.NodeSelector = self.Spec.NodeSelector
	}
	if len(spec.Tolerations) == 0 {
		spec.Tolerations = self.Spec.Tolerations
	}
	if spec.Affinity == nil || *spec.Affinity == (corev1.Affinity{}) {
		spec.Affinity = self.Spec.Affinity.DeepCopy()
	}
	if spec.PriorityClassName == "" {
		spec.PriorityClassName = self.Spec.PriorityClassName
	}
	if spec.SecurityContext == nil || equality.Semantic.DeepEqual(*spec.SecurityContext, corev1.PodSecurityContext{}) {
		spec.SecurityContext = self.Spec.SecurityContext.DeepCopy()
	}
	if len(spec.ImagePullSecrets) == 0 {
		spec.ImagePullSecrets = self.Spec.ImagePullSecrets
	}
	if own == nil {
		return
	}
	for i := range spec.Containers {
		inheritContainer(&spec.Containers[i], own)
	}
}

// inheritContainer completes one worker container from the coordinator's container.
func inheritContainer(c, own *corev1.Container) {
	if c.Image == "" {
		c.Image = own.Image
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = own.ImagePullPolicy
		}
	}
	if len(c.Resources.Requests) == 0 && len(c.Resources.Limits) == 0 && len(c.Resources.Claims) == 0 {
		c.Resources = *own.Resources.DeepCopy()
	}
	if c.SecurityContext == nil {
		c.SecurityContext = own.SecurityContext.DeepCopy()
	}
	if len(c.EnvFrom) == 0 {
		c.EnvFrom = slices.Clone(own.EnvFrom)
	}
	// The same directories of the claims: the worker's source must be the tree the coordinator
	// walks (the workers check it: Lease.SourceCheck), its destination the coordinator's.
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		if (m.Name != SourceVolume && m.Name != DestVolume) || m.SubPath != "" || m.SubPathExpr != "" {
			continue
		}
		if ownMount := mountOf(own, m.Name); ownMount != nil {
			m.SubPath, m.SubPathExpr = ownMount.SubPath, ownMount.SubPathExpr
		}
	}
	for _, e := range own.Env {
		defined := slices.ContainsFunc(c.Env, func(w corev1.EnvVar) bool { return w.Name == e.Name })
		if isSharedEnv(e.Name) && !defined {
			c.Env = append(c.Env, *e.DeepCopy())
		}
	}
}

// mountOf is c's mount of the volume vol, nil when it has none.
func mountOf(c *corev1.Container, vol string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == vol {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// ownContainer is the coordinator's container: the one named "coordinator", else the first.
func ownContainer(self *corev1.Pod) *corev1.Container {
	var own *corev1.Container
	for i := range self.Spec.Containers {
		if c := &self.Spec.Containers[i]; c.Name == "coordinator" || own == nil {
			own = c
		}
	}
	return own
}

// inheritRun gives the worker Job what makes it part of the coordinator's run, where the
// template has none: the run's labels on the Job and its Pods (the coordinator Pod's, with
// component worker; kustomize's labels reach the workers this way), and the address of the
// coordinator's Service in KRSYNC_COORDINATOR.
func inheritRun(job *batchv1.Job, self *corev1.Pod) {
	labels := runLabels(self)
	job.Labels = mergeLabels(labels, job.Labels)
	job.Spec.Template.Labels = mergeLabels(labels, job.Spec.Template.Labels)
	url := coordinatorURL(self)
	for i := range job.Spec.Template.Spec.Containers {
		c := &job.Spec.Template.Spec.Containers[i]
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "KRSYNC_COORDINATOR" }) {
			c.Env = append(c.Env, corev1.EnvVar{Name: "KRSYNC_COORDINATOR", Value: url})
		}
	}
}

// runLabels are the coordinator Pod's labels but those the Job controller sets, with
// component worker.
func runLabels(self *corev1.Pod) map[string]string {
	labels := map[string]string{}
	for k, v := range self.Labels {
		if strings.HasPrefix(k, "batch.kubernetes.io/") || k == "controller-uid" || k == "job-name" {
			continue
		}
		labels[k] = v
	}
	labels[ComponentLabel] = "worker"
	return labels
}

// mergeLabels returns base with over's labels on top.
func mergeLabels(base, over map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, over)
	return out
}

// coordinatorURL is where the workers reach the coordinator: its Service, which has the name
// of the coordinator's Job (the manifests make them so, and kustomize renames both alike), on
// the port of the container's port "http".
func coordinatorURL(self *corev1.Pod) string {
	service := self.Labels[batchv1.JobNameLabel]
	if service == "" {
		service = CoordinatorName
	}
	port := int32(CoordinatorPort)
	if own := ownContainer(self); own != nil {
		for _, p := range own.Ports {
			if p.Name == "http" {
				port = p.ContainerPort
			}
		}
	}
	return fmt.Sprintf("http://%s:%d", service, port)
}

// workerJobName is the worker Job's name: the template's own, else the name of the ConfigMap
// the template comes from (the coordinator Pod's volume "worker-template"; the Role grants
// exactly that name), else WorkerJobName.
func workerJobName(tmpl *batchv1.Job, self *corev1.Pod) string {
	if tmpl.Name != "" {
		return tmpl.Name
	}
	if self != nil {
		for _, v := range self.Spec.Volumes {
			if v.Name == WorkerTemplateVolume && v.ConfigMap != nil && v.ConfigMap.Name != "" {
				return v.ConfigMap.Name
			}
		}
	}
	return WorkerJobName
}
