package kube

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// TestInheritFillsOnlyWhatTheTemplateLeavesOut: each shared field comes from the
// coordinator's Pod when the template has none (an empty value counts as none), and the
// template's own value wins otherwise; role variables stay with their role.
func TestInheritFillsOnlyWhatTheTemplateLeavesOut(t *testing.T) {
	self := &corev1.Pod{Spec: corev1.PodSpec{
		NodeSelector:      map[string]string{"disk": "ssd"},
		Tolerations:       []corev1.Toleration{{Key: "dedicated", Value: "storage", Effect: corev1.TaintEffectNoSchedule}},
		Affinity:          &corev1.Affinity{PodAffinity: &corev1.PodAffinity{}},
		PriorityClassName: "batch-low",
		SecurityContext:   &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)},
		ImagePullSecrets:  []corev1.LocalObjectReference{{Name: "registry"}},
		Containers: []corev1.Container{{
			Name: "coordinator", Image: "registry.test/krsync:v9", ImagePullPolicy: corev1.PullAlways,
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("3Gi")}},
			EnvFrom:   []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "proxy"}}}},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "source", MountPath: "/source", SubPath: "exports/a"},
				{Name: "dest", MountPath: "/dest", SubPath: "copy"},
			},
			Env: []corev1.EnvVar{
				{Name: "TZ", Value: "UTC"},
				{Name: "KRSYNC_LOG_LEVEL", Value: "debug"},
				{Name: "KRSYNC_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "run-token"}, Key: "token"}}},
				{Name: "KRSYNC_FPART_OPTS", Value: "-f 9"},    // the coordinator's own
				{Name: "KRSYNC_LOG_FORMAT", Value: "console"}, // the template's wins
			},
		}},
	}}

	t.Run("empty template inherits", func(t *testing.T) {
		spec := corev1.PodSpec{
			NodeSelector: map[string]string{}, Affinity: &corev1.Affinity{}, SecurityContext: &corev1.PodSecurityContext{},
			Containers: []corev1.Container{{Name: "worker", Env: []corev1.EnvVar{{Name: "KRSYNC_LOG_FORMAT", Value: "json"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "source", MountPath: "/source"}, {Name: "dest", MountPath: "/dest"}, {Name: "tmp", MountPath: "/tmp"}}}},
		}
		inherit(&spec, self)
		c := spec.Containers[0]
		checks := []struct {
			what      string
			got, want any
		}{
			{"nodeSelector", spec.NodeSelector, self.Spec.NodeSelector},
			{"tolerations", spec.Tolerations, self.Spec.Tolerations},
			{"affinity", spec.Affinity, self.Spec.Affinity},
			{"priorityClassName", spec.PriorityClassName, self.Spec.PriorityClassName},
			{"securityContext", spec.SecurityContext, self.Spec.SecurityContext},
			{"imagePullSecrets", spec.ImagePullSecrets, self.Spec.ImagePullSecrets},
			{"image", c.Image + " " + string(c.ImagePullPolicy), "registry.test/krsync:v9 Always"},
			{"resources", c.Resources, self.Spec.Containers[0].Resources},
			{"envFrom", c.EnvFrom, self.Spec.Containers[0].EnvFrom},
			{"subPaths", mountSubPaths(c.VolumeMounts), "source:exports/a dest:copy tmp:"},
			{"env", envNames(c.Env), "KRSYNC_LOG_FORMAT=json TZ=UTC KRSYNC_LOG_LEVEL=debug KRSYNC_TOKEN=secret:run-token/token"},
		}
		for _, ck := range checks {
			if !equality.Semantic.DeepEqual(ck.got, ck.want) {
				t.Errorf("%s = %+v, want %+v", ck.what, ck.got, ck.want)
			}
		}
	})

	t.Run("template's own values win", func(t *testing.T) {
		own := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
		spec := corev1.PodSpec{
			NodeSelector:      map[string]string{"role": "worker"},
			Tolerations:       []corev1.Toleration{{Key: "workers", Operator: corev1.TolerationOpExists}},
			PriorityClassName: "high",
			SecurityContext:   &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](7)},
			Containers: []corev1.Container{{Name: "worker", Image: "other:v1", Resources: own,
				VolumeMounts: []corev1.VolumeMount{{Name: "source", SubPath: "elsewhere"}, {Name: "dest"}},
				Env:          []corev1.EnvVar{{Name: "TZ", Value: "Europe/Paris"}}}},
		}
		inherit(&spec, self)
		c := spec.Containers[0]
		if spec.NodeSelector["role"] != "worker" || len(spec.NodeSelector) != 1 || spec.Tolerations[0].Key != "workers" ||
			spec.PriorityClassName != "high" || *spec.SecurityContext.RunAsUser != 7 {
			t.Errorf("template's scheduling or security overwritten: %+v", spec)
		}
		if c.Image != "other:v1" || c.ImagePullPolicy != "" || !equality.Semantic.DeepEqual(c.Resources, own) {
			t.Errorf("template's image or resources overwritten: %s %s %+v", c.Image, c.ImagePullPolicy, c.Resources)
		}
		if got := mountSubPaths(c.VolumeMounts); got != "source:elsewhere dest:copy" {
			t.Errorf("subPaths %s: want the template's own for source, the coordinator's for dest", got)
		}
		if got := envNames(c.Env); got != "TZ=Europe/Paris KRSYNC_LOG_LEVEL=debug KRSYNC_TOKEN=secret:run-token/token KRSYNC_LOG_FORMAT=console" {
			t.Errorf("env %s", got)
		}
	})
}

func mountSubPaths(mounts []corev1.VolumeMount) string {
	var s []string
	for _, m := range mounts {
		s = append(s, m.Name+":"+m.SubPath)
	}
	return strings.Join(s, " ")
}

func envNames(env []corev1.EnvVar) string {
	var s string
	for _, e := range env {
		if s != "" {
			s += " "
		}
		v := e.Value
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
			v = "secret:" + r.SecretKeyRef.Name + "/" + r.SecretKeyRef.Key
		}
		s += e.Name + "=" + v
	}
	return s
}
