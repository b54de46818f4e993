package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSameDestination: the coordinator compares the destination in its walk only when the
// workers' containers certainly mount the same directory of the same claim at their --dest
// and run rsync options whose quick check it makes; every doubt is a no.
func TestSameDestination(t *testing.T) {
	claim := func(name string) corev1.Volume {
		return corev1.Volume{Name: DestVolume, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}
	}
	self := func(sub string) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{claim("new")},
			Containers: []corev1.Container{{Name: "coordinator",
				VolumeMounts: []corev1.VolumeMount{{Name: DestVolume, MountPath: "/dest", SubPath: sub}}}},
		}}
	}
	worker := func(edit func(*corev1.PodSpec)) *corev1.PodSpec {
		spec := &corev1.PodSpec{
			Volumes: []corev1.Volume{claim("new")},
			Containers: []corev1.Container{{Name: "worker", Args: []string{"worker"},
				Env: []corev1.EnvVar{
					{Name: "KRSYNC_DEST", Value: "/dest"},
					{Name: "KRSYNC_RSYNC_OPTS", Value: "--archive --numeric-ids --hard-links"},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: DestVolume, MountPath: "/dest", SubPath: "copy"}}}},
		}
		if edit != nil {
			edit(spec)
		}
		return spec
	}
	c0 := func(edit func(*corev1.Container)) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) { edit(&s.Containers[0]) }
	}
	tests := []struct {
		name    string
		self    *corev1.Pod
		workers *corev1.PodSpec
		dest    string
		want    bool
	}{
		{"the manifests' shape", self("copy"), worker(nil), "/dest", true},
		{"default options and --dest", self("copy"), worker(c0(func(c *corev1.Container) { c.Env = nil })), "/dest", true},
		{"-aH: the quick check holds", self("copy"), worker(c0(func(c *corev1.Container) { c.Env[1].Value = "-aH" })), "/dest", true},
		{"another claim", self("copy"), worker(func(s *corev1.PodSpec) { s.Volumes[0] = claim("other") }), "/dest", false},
		{"another directory of the claim", self("copy"), worker(c0(func(c *corev1.Container) { c.VolumeMounts[0].SubPath = "" })), "/dest", false},
		{"a subPathExpr", self("copy"), worker(c0(func(c *corev1.Container) { c.VolumeMounts[0].SubPathExpr = "$(POD)" })), "/dest", false},
		{"--dest elsewhere than the mount", self("copy"), worker(c0(func(c *corev1.Container) { c.Env[0].Value = "/dest/sub" })), "/dest", false},
		{"the coordinator's --dest is not its mount", self("copy"), worker(nil), "/data", false},
		{"checksum options", self("copy"), worker(c0(func(c *corev1.Container) { c.Env[1].Value = "-aH --checksum" })), "/dest", false},
		{"ACLs", self("copy"), worker(c0(func(c *corev1.Container) { c.Env[1].Value = "-aHA" })), "/dest", false},
		{"options from a Secret", self("copy"), worker(c0(func(c *corev1.Container) {
			c.Env[1] = corev1.EnvVar{Name: "KRSYNC_RSYNC_OPTS", ValueFrom: &corev1.EnvVarSource{}}
		})), "/dest", false},
		{"envFrom", self("copy"), worker(c0(func(c *corev1.Container) { c.EnvFrom = []corev1.EnvFromSource{{}} })), "/dest", false},
		{"flags in args", self("copy"), worker(c0(func(c *corev1.Container) { c.Args = append(c.Args, "--rsync-opts=-c") })), "/dest", false},
		{"a command", self("copy"), worker(c0(func(c *corev1.Container) { c.Command = []string{"/bin/sh"} })), "/dest", false},
		{"a second container without the mount", self("copy"), worker(func(s *corev1.PodSpec) {
			s.Containers = append(s.Containers, corev1.Container{Name: "sidecar", Args: []string{"worker"}})
		}), "/dest", false},
		{"the coordinator mounts no destination", &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "coordinator"}}}}, worker(nil), "/dest", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameDestination(tc.self, tc.workers, tc.dest); got != tc.want {
				t.Errorf("sameDestination = %v, want %v", got, tc.want)
			}
		})
	}
}
