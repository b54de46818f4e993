package kubelet_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/krsync/krsync/internal/testing/imageroot"
	"github.com/krsync/krsync/internal/testing/kubelet"
	"github.com/krsync/krsync/internal/testing/kubelet/sandbox"
	"github.com/krsync/krsync/internal/testing/testbin"
)

// inImage makes start's kubelet run its containers in the image's root file system.
func inImage(img *kubelet.Image) func(*kubelet.Config) {
	return func(cfg *kubelet.Config) { cfg.Image = img }
}

// probeScript reports, in the termination message, what a runtime must get right: the
// process's credentials and capabilities as the kernel sees them, which root it runs in, the
// krsync under test at the image's path, and what it can write where.
const probeScript = `{
grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status | tr -s '\t' ' '
echo "os: $(. /etc/os-release && echo $VERSION_CODENAME)"
echo "krsync: $(krsync version)"
echo "cwd: $(pwd) home: $HOME"
echo "source: $(cat /source/hello)"
for d in /etc /source /dest /tmp; do
  if err=$(touch $d/probe 2>&1); then echo "write $d: ok"; else echo "write $d: ${err##*: }"; fi
done
} > /dev/termination-log`

// TestImageSecurityContext: in the image, a container's process has exactly the user, groups,
// capabilities, no_new_privs and read-only root its securityContext asks for (read back from
// /proc/self/status and from the kernel's answers to writes), with the volumes at their mount
// paths and a readOnly one refusing writes; what it writes to its root never reaches the image.
func TestImageSecurityContext(t *testing.T) {
	img := imageroot.Image(t)
	manifestCaps := []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD"}
	defaultCaps := []string{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
		"NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
	tests := []struct {
		name string
		pod  *corev1.PodSecurityContext
		sc   *corev1.SecurityContext
		// want are lines of the probe's report.
		want []string
		// bounding are the capabilities of CapBnd; effective says whether CapPrm and CapEff
		// equal them (root) or are empty (any other user: Kubernetes has no ambient capabilities).
		bounding  []string
		effective bool
	}{
		{
			name: "root with the worker manifest's capabilities, read-only root",
			sc: &corev1.SecurityContext{
				RunAsUser: ptr.To[int64](0), RunAsNonRoot: ptr.To(false), AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem: ptr.To(true),
				Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: manifestCaps},
			},
			want: []string{"Uid: 0 0 0 0", "Gid: 0 0 0 0", "Groups: ", "NoNewPrivs: 1",
				"write /etc: Read-only file system", "write /source: Read-only file system", "write /dest: ok", "write /tmp: ok"},
			bounding: []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD"}, effective: true,
		},
		{
			name: "the image's user, no securityContext: the runtime's default capabilities",
			want: []string{"Uid: 65532 65532 65532 65532", "Gid: 65532 65532 65532 65532", "NoNewPrivs: 0",
				"write /etc: Permission denied", "write /dest: ok", "write /tmp: ok", "cwd: / home: /nonexistent"},
			bounding: defaultCaps, effective: false,
		},
		{
			name:     "root, default capabilities, writable root, no_new_privs unset",
			sc:       &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)},
			want:     []string{"Uid: 0 0 0 0", "NoNewPrivs: 0", "write /etc: ok", "write /source: Read-only file system", "cwd: / home: /root"},
			bounding: defaultCaps, effective: true,
		},
		{
			name: "pod-level user, group, supplemental groups and fsGroup; a container drop",
			pod: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1234), RunAsGroup: ptr.To[int64](2345),
				SupplementalGroups: []int64{3000}, FSGroup: ptr.To[int64](4000)},
			sc:       &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW", "MKNOD"}}},
			want:     []string{"Uid: 1234 1234 1234 1234", "Gid: 2345 2345 2345 2345", "Groups: 3000 4000", "write /dest: ok"},
			bounding: without(defaultCaps, "MKNOD", "NET_RAW"), effective: false,
		},
	}
	e := start(t, inImage(img))
	src := filepath.Join(e.dir, "source")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(e.dir, fmt.Sprint("dest", i))
			if err := os.MkdirAll(dest, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dest, 0o777); err != nil {
				t.Fatal(err)
			}
			pod := probePod(fmt.Sprint("probe-", i), src, dest, tc.pod, tc.sc)
			pod = e.runPod(t, pod)
			term := terminated(t, pod)
			if pod.Status.Phase != corev1.PodSucceeded {
				t.Fatalf("phase %s exit %d: %s", pod.Status.Phase, term.ExitCode, term.Message)
			}
			report := term.Message
			t.Logf("report:\n%s", report)
			lines := strings.Split(report, "\n")
			for _, w := range append(tc.want, "os: trixie", "krsync: krsync "+testbin.Version, "source: from the host") {
				if !hasLine(lines, w) {
					t.Errorf("report lacks %q", w)
				}
			}
			mask, err := sandbox.CapabilityMask(tc.bounding)
			if err != nil {
				t.Fatal(err)
			}
			effective := uint64(0)
			if tc.effective {
				effective = mask
			}
			for field, want := range map[string]uint64{"CapBnd": mask, "CapPrm": effective, "CapEff": effective, "CapInh": 0, "CapAmb": 0} {
				if line := fmt.Sprintf("%s: %016x", field, want); !hasLine(lines, line) {
					t.Errorf("report lacks %q", line)
				}
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(img.Rootfs, "etc/probe")); !os.IsNotExist(err) {
		t.Errorf("a container's write to its root reached the image's root file system (%v)", err)
	}
}

// TestImageRunAsNonRootRefusesRoot: runAsNonRoot with uid 0 never starts the process; the
// container ends with a start error that says why.
func TestImageRunAsNonRootRefusesRoot(t *testing.T) {
	img := imageroot.Image(t)
	e := start(t, inImage(img))
	pod := shPod("nonroot", "echo ran > /dev/termination-log")
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](0), RunAsNonRoot: ptr.To(true)}
	pod = e.runPod(t, pod)
	term := terminated(t, pod)
	if pod.Status.Phase != corev1.PodFailed || term.Reason != "StartError" || !strings.Contains(term.Message, "runAsNonRoot") {
		t.Errorf("phase %s, %s %q: want Failed, StartError naming runAsNonRoot", pod.Status.Phase, term.Reason, term.Message)
	}
}

// TestImageMissingCommandIsStartError: a command the image lacks is the runtime's start error,
// reported by the container's init before any exec.
func TestImageMissingCommandIsStartError(t *testing.T) {
	img := imageroot.Image(t)
	e := start(t, inImage(img))
	pod := e.runPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nocommand"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "krsync", Command: []string{"fpsync"}}}},
	})
	term := terminated(t, pod)
	if pod.Status.Phase != corev1.PodFailed || term.Reason != "StartError" || !strings.Contains(term.Message, `"fpsync": executable file not found`) {
		t.Errorf("phase %s, %s %q: want Failed, StartError: fpsync not found", pod.Status.Phase, term.Reason, term.Message)
	}
}

func probePod(name, src, dest string, psc *corev1.PodSecurityContext, sc *corev1.SecurityContext) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			SecurityContext: psc,
			Containers: []corev1.Container{{
				Name: "c", Image: "krsync", Command: []string{"sh", "-c", probeScript}, SecurityContext: sc,
				VolumeMounts: []corev1.VolumeMount{
					{Name: "source", MountPath: "/source", ReadOnly: true},
					{Name: "dest", MountPath: "/dest"},
					{Name: "tmp", MountPath: "/tmp"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "source", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: src}}},
				{Name: "dest", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dest}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) == strings.TrimSpace(want) {
			return true
		}
	}
	return false
}

func without(list []string, drop ...string) []string {
	var out []string
	for _, s := range list {
		if !contains(drop, s) {
			out = append(out, s)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
