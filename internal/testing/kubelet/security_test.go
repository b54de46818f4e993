package kubelet

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// TestCapabilities: containerd's rule over the default set, drop and add.
func TestCapabilities(t *testing.T) {
	caps := func(drop, add []corev1.Capability) *corev1.SecurityContext {
		return &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: drop, Add: add}}
	}
	tests := []struct {
		name string
		sc   *corev1.SecurityContext
		want []string
	}{
		{"nothing said: the default set", &corev1.SecurityContext{}, []string{
			"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
			"NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}},
		{"drop ALL, add a few", caps([]corev1.Capability{"ALL"}, []corev1.Capability{"FOWNER", "DAC_OVERRIDE"}), []string{"DAC_OVERRIDE", "FOWNER"}},
		{"drop ALL only", caps([]corev1.Capability{"ALL"}, nil), nil},
		{"CAP_ prefix and case", caps([]corev1.Capability{"all"}, []corev1.Capability{"cap_chown"}), []string{"CHOWN"}},
		{"add ALL, drop one", caps([]corev1.Capability{"SYS_ADMIN"}, []corev1.Capability{"ALL"}), nil}, // checked below
		{"drop from the defaults", caps([]corev1.Capability{"NET_RAW", "MKNOD", "SETUID", "SETGID", "KILL", "AUDIT_WRITE", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT"}, nil),
			[]string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}},
	}
	for _, tc := range tests {
		got, err := capabilities(tc.sc)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.name == "add ALL, drop one" {
			if len(got) < 40 || contains(got, "SYS_ADMIN") || !contains(got, "BPF") {
				t.Errorf("%s: got %v, want every capability but SYS_ADMIN", tc.name, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, err := capabilities(caps(nil, []corev1.Capability{"NOT_A_CAP"})); err == nil {
		t.Error("an unknown capability was accepted")
	}
	if got, _ := capabilities(&corev1.SecurityContext{Privileged: ptr.To(true)}); len(got) < 40 {
		t.Errorf("privileged: %v, want every capability", got)
	}
}

// TestContainerIdentity: who a container runs as, from the image's user and /etc files and
// the Pod's and container's securityContext.
func TestContainerIdentity(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nkrsync:x:65532:65532::/nonexistent:/usr/sbin/nologin\nalice:x:1000:1001::/home/alice:/bin/sh\n",
		"etc/group":  "root:x:0:\nkrsync:x:65532:\nstaff:x:50:alice,bob\ndisk:x:6:alice\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := &Image{Rootfs: root, User: "65532:65532"}
	tests := []struct {
		name      string
		imageUser string
		psc       *corev1.PodSecurityContext
		sc        *corev1.SecurityContext
		uid, gid  uint32
		groups    []uint32
		home      string
		fails     bool
	}{
		{name: "the image's user", uid: 65532, gid: 65532, home: "/nonexistent"},
		{name: "runAsUser takes the user's group from passwd", sc: &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000)},
			uid: 1000, gid: 1001, groups: []uint32{6, 50}, home: "/home/alice"},
		{name: "runAsUser unknown to the image: group 0", psc: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](4242)}, uid: 4242, gid: 0, home: "/"},
		{name: "the container's user wins over the Pod's", psc: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](4242), RunAsGroup: ptr.To[int64](7)},
			sc: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}, uid: 0, gid: 7, home: "/root"},
		{name: "supplemental groups and fsGroup", psc: &corev1.PodSecurityContext{SupplementalGroups: []int64{9, 3}, FSGroup: ptr.To[int64](3)},
			uid: 65532, gid: 65532, groups: []uint32{3, 9}, home: "/nonexistent"},
		{name: "image user by name", imageUser: "alice", uid: 1000, gid: 1001, groups: []uint32{6, 50}, home: "/home/alice"},
		{name: "runAsNonRoot refuses root", psc: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, sc: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}, fails: true},
		{name: "runAsNonRoot accepts the image's user", psc: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, uid: 65532, gid: 65532, home: "/nonexistent"},
		{name: "an image user the image lacks", imageUser: "mallory", fails: true},
	}
	for _, tc := range tests {
		img := *img
		if tc.imageUser != "" {
			img.User = tc.imageUser
		}
		pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: tc.psc}}
		id, err := containerIdentity(&img, pod, &corev1.Container{Name: "c", SecurityContext: tc.sc})
		if tc.fails {
			if err == nil {
				t.Errorf("%s: got %+v, want an error", tc.name, id)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if id.uid != tc.uid || id.gid != tc.gid || !reflect.DeepEqual(id.groups, tc.groups) || id.home != tc.home {
			t.Errorf("%s: uid %d gid %d groups %v home %q; want %d %d %v %q", tc.name, id.uid, id.gid, id.groups, id.home, tc.uid, tc.gid, tc.groups, tc.home)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestImageForContainer: the image's own references get its config; another image is the
// root file system as a plain base image (root, no entrypoint).
func TestImageForContainer(t *testing.T) {
	img := &Image{Refs: []string{"krsync:e2e"}, Entrypoint: []string{"krsync"}, User: "65532:65532", Env: []string{"PATH=/bin"}}
	if got := img.forContainer("krsync:e2e"); got != img {
		t.Errorf("krsync:e2e: got %+v, want the image itself", got)
	}
	base := img.forContainer("busybox")
	if base.User != "" || base.Entrypoint != nil || !reflect.DeepEqual(base.Env, img.Env) {
		t.Errorf("busybox: got %+v, want root, no entrypoint, the same env", base)
	}
	if all := (&Image{User: "1:1"}); all.forContainer("anything") != all {
		t.Error("an image without Refs is every image")
	}
}
