package kubelet_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/krsync/krsync/internal/testing/kubelet"
	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/internal/testing/testbin"
)

var cluster kubeplane.Shared

func TestMain(m *testing.M) {
	code := cluster.Main(m)
	testbin.RemoveKrsync()
	kubelet.RemoveBuilt()
	os.Exit(code)
}

// env is one test's cluster: a namespace and a kubelet.
type env struct {
	cs  kubernetes.Interface
	ns  string
	kl  *kubelet.Kubelet
	dir string
}

// start brings up the shared control plane, a namespace and a kubelet for one test; configure
// changes the kubelet's Config (e.g. to run the containers in the image).
func start(t *testing.T, configure ...func(*kubelet.Config)) *env {
	t.Helper()
	plane := cluster.Require(t)
	binary := testbin.Krsync(t)
	rc, err := plane.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ns := kubeplane.Namespace(t, cs)
	waitFor(t, "default ServiceAccount in "+ns, time.Minute, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, nil
	})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := kubelet.Config{
		RESTConfig: rc, NodeName: kubeplane.UniqueName("node"), Binary: binary, Dir: filepath.Join(dir, "kubelet"),
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
	for _, f := range configure {
		f(&cfg)
	}
	kl, err := kubelet.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var b strings.Builder
			kl.DumpLogs(&b, 8<<10)
			t.Log(b.String())
		}
		if err := kl.Stop(); err != nil {
			t.Error(err)
		}
		cancel()
	})
	return &env{cs: cs, ns: ns, kl: kl, dir: dir}
}

// waitFor polls cond until it is true or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
}

// runPod creates a Pod and waits until it reaches a terminal phase.
func (e *env) runPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	e.createPod(t, pod)
	return e.waitPhase(t, pod.Name, corev1.PodSucceeded, corev1.PodFailed)
}

func (e *env) createPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if pod.Spec.RestartPolicy == "" {
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	if _, err := e.cs.CoreV1().Pods(e.ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
}

func (e *env) waitPhase(t *testing.T, name string, phases ...corev1.PodPhase) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	waitFor(t, "pod "+name+" in phase "+string(phases[0]), time.Minute, func() (bool, error) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = p
		for _, ph := range phases {
			if p.Status.Phase == ph {
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

func shPod(name, script string, env ...corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "krsync", Command: []string{"sh", "-c", script}, Env: env,
		}}},
	}
}

func terminated(t *testing.T, pod *corev1.Pod) *corev1.ContainerStateTerminated {
	t.Helper()
	if len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("pod %s: want one terminated container, got %+v", pod.Name, pod.Status.ContainerStatuses)
	}
	return pod.Status.ContainerStatuses[0].State.Terminated
}

// TestKrsyncVersionPodIsScheduledAndSucceeds: the scheduler binds a plain Pod to the kubelet's
// Node, the image's ENTRYPOINT is krsync, and the Pod ends Succeeded with exit code 0.
func TestKrsyncVersionPodIsScheduledAndSucceeds(t *testing.T) {
	e := start(t)
	pod := e.runPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "version"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "krsync", Image: "krsync:dev", Args: []string{"version"}}}},
	})
	if pod.Spec.NodeName != e.kl.NodeName() {
		t.Errorf("pod bound to %q, want the kubelet's node %q", pod.Spec.NodeName, e.kl.NodeName())
	}
	if pod.Status.Phase != corev1.PodSucceeded || terminated(t, pod).ExitCode != 0 {
		t.Fatalf("phase %s exit %d, want Succeeded 0", pod.Status.Phase, terminated(t, pod).ExitCode)
	}
	if pod.Status.PodIP != "127.0.0.1" {
		t.Errorf("podIP %q, want 127.0.0.1", pod.Status.PodIP)
	}
	logs := e.kl.Logs()
	if len(logs) != 1 {
		t.Fatalf("logs: %+v", logs)
	}
	out, err := os.ReadFile(logs[0].Path)
	if err != nil || !strings.Contains(string(out), "krsync "+testbin.Version) {
		t.Errorf("log %s = %q (%v), want the version line", logs[0].Path, out, err)
	}
}

// TestExitCodeAndTerminationMessage: a failing container's exit code and the message it wrote
// to its terminationMessagePath (mapped to a host file) reach the Pod's status.
func TestExitCodeAndTerminationMessage(t *testing.T) {
	tests := []struct {
		name, pod, script string
		policy            corev1.TerminationMessagePolicy
		phase             corev1.PodPhase
		code              int32
		message           string
	}{
		{"success", "ok", `echo done > "$TERM_LOG"`, corev1.TerminationMessageReadFile, corev1.PodSucceeded, 0, "done"},
		{"failure with message", "failure", `echo "3 partitions failed" > "$TERM_LOG"; exit 3`, corev1.TerminationMessageReadFile, corev1.PodFailed, 3, "3 partitions failed"},
		{"fallback to logs", "fallback", `echo "last words"; exit 1`, corev1.TerminationMessageFallbackToLogsOnError, corev1.PodFailed, 1, "last words"},
		// $$ is Kubernetes' escape for $, so the shell sees $$.
		{"killed by a signal", "killed", `kill -9 $$$$`, corev1.TerminationMessageReadFile, corev1.PodFailed, 137, ""},
	}
	e := start(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := shPod(tc.pod, tc.script, corev1.EnvVar{Name: "TERM_LOG", Value: "/dev/termination-log"})
			pod.Spec.NodeName = e.kl.NodeName()
			pod.Spec.Containers[0].TerminationMessagePolicy = tc.policy
			pod = e.runPod(t, pod)
			term := terminated(t, pod)
			if pod.Status.Phase != tc.phase || term.ExitCode != tc.code || !strings.Contains(term.Message, tc.message) {
				t.Errorf("phase %s exit %d message %q, want %s %d %q", pod.Status.Phase, term.ExitCode, term.Message, tc.phase, tc.code, tc.message)
			}
		})
	}
}

// TestEnvVolumesAndPorts: literal, downward-API, Secret and ConfigMap env; PVC, ConfigMap and
// Secret volumes; container ports and Service names rewritten to the same loopback port.
func TestEnvVolumesAndPorts(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	out := filepath.Join(e.dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, func() error {
		_, err := e.cs.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"token": "sekrit"}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}, Data: map[string]string{"opts": "-zz", "FROM_CM": "yes"}}, metav1.CreateOptions{})
		return err
	})
	pvName := kubeplane.UniqueName("pv")
	mustCreate(t, func() error {
		_, err := e.cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: pvName},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:               corev1.ResourceList{corev1.ResourceStorage: *resourceQuantity("1Gi")},
				AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: out}},
				ClaimRef:               &corev1.ObjectReference{Namespace: e.ns, Name: "out"},
				StorageClassName:       "",
			},
		}, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() {
		_ = e.cs.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
	})
	mustCreate(t, func() error {
		_, err := e.cs.CoreV1().PersistentVolumeClaims(e.ns).Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "out"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, VolumeName: pvName,
				StorageClassName: ptr.To(""),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *resourceQuantity("1Gi")}},
			},
		}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := e.cs.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "server"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "server"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
		}, metav1.CreateOptions{})
		return err
	})

	// The client starts first: its Service address must still lead to the server's port.
	client := shPod("client", `printf '%s\n' "$ADDR" > "$OUT/client"`,
		corev1.EnvVar{Name: "OUT", Value: "/out"},
		corev1.EnvVar{Name: "ADDR", Value: "http://server." + e.ns + ".svc:80/v1"})
	client.Spec.Volumes = []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "out"}}}}
	client.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	client.Spec.NodeName = e.kl.NodeName()
	if p := e.runPod(t, client); p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("client pod: %s %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}

	server := shPod("server", `set -e
{ echo "listen=$LISTEN"; echo "name=$POD_NAME ns=$POD_NS node=$NODE ip=$POD_IP"; echo "token=$TOKEN opts=$OPTS from=$FROM_CM ref=$REF"
  echo "secretfile=$(cat $SECRET_DIR/token) cmfile=$(cat $CM_DIR/opts)"; } > "$OUT/server"`,
		corev1.EnvVar{Name: "OUT", Value: "/out"},
		corev1.EnvVar{Name: "LISTEN", Value: ":8080"},
		corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		corev1.EnvVar{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		corev1.EnvVar{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		corev1.EnvVar{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		corev1.EnvVar{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "token"}}},
		corev1.EnvVar{Name: "OPTS", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "opts"}}},
		corev1.EnvVar{Name: "REF", Value: "$(POD_NAME)-x"},
		corev1.EnvVar{Name: "CM_DIR", Value: "/etc/cm"},
		corev1.EnvVar{Name: "SECRET_DIR", Value: "/etc/krsync"},
	)
	server.Labels = map[string]string{"app": "server"}
	c := &server.Spec.Containers[0]
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}, {Name: "sec", MountPath: "/etc/krsync", ReadOnly: true}, {Name: "cm", MountPath: "/etc/cm"}}
	server.Spec.Volumes = []corev1.Volume{
		{Name: "out", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "out"}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
		{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
	}
	server.Spec.NodeName = e.kl.NodeName()
	if p := e.runPod(t, server); p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("server pod: %s %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}

	clientOut := readFile(t, filepath.Join(out, "client"))
	serverOut := readFile(t, filepath.Join(out, "server"))
	listen := strings.TrimPrefix(strings.Split(serverOut, "\n")[0], "listen=")
	if !strings.HasPrefix(listen, "127.0.0.1:") || listen == "127.0.0.1:8080" {
		t.Fatalf("server LISTEN rewritten to %q, want a loopback port of its own", listen)
	}
	if want := "http://" + listen + "/v1\n"; clientOut != want {
		t.Errorf("client reached the Service at %q, want %q (the server's port)", clientOut, want)
	}
	for _, want := range []string{
		"name=server ns=" + e.ns + " node=" + e.kl.NodeName() + " ip=127.0.0.1",
		"token=sekrit opts=-zz from=yes ref=server-x",
		"secretfile=sekrit cmfile=-zz",
	} {
		if !strings.Contains(serverOut, want) {
			t.Errorf("server saw %q, want a line %q", serverOut, want)
		}
	}
}

// TestServiceAccountKubeconfig: a container that would mount the ServiceAccount token gets a
// kubeconfig instead, authenticating as the Pod's ServiceAccount with a TokenRequest token.
func TestServiceAccountKubeconfig(t *testing.T) {
	e := start(t)
	out := filepath.Join(e.dir, "kc")
	pod := shPod("kc", `cp "$KRSYNC_KUBECONFIG" "$DEST"`, corev1.EnvVar{Name: "DEST", Value: out})
	pod.Spec.NodeName = e.kl.NodeName()
	if p := e.runPod(t, pod); p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod: %s %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", out)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + e.ns + ":default"; review.Status.UserInfo.Username != want {
		t.Errorf("kubeconfig authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}
	_, err = cs.CoreV1().Secrets(e.ns).List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("list secrets as the default ServiceAccount: err = %v, want forbidden", err)
	}
}

// TestDeletedPodGetsSIGTERMThenSIGKILL: deleting a running Pod through the API signals its
// process like a kubelet, and the kubelet removes the Pod object afterwards.
func TestDeletedPodGetsSIGTERMThenSIGKILL(t *testing.T) {
	tests := []struct {
		name   string
		script string
		grace  int64
		want   string
	}{
		{"exits on SIGTERM", `trap 'echo got-term > "$MARK"; exit 7' TERM; echo running > "$MARK"; while :; do sleep 0.05; done`, 30, "got-term"},
		{"ignores SIGTERM", `trap '' TERM; echo running > "$MARK"; while :; do sleep 0.05; done`, 1, "running"},
	}
	e := start(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mark := filepath.Join(e.dir, "mark"+string(rune('a'+i)))
			name := "sig" + string(rune('a'+i))
			pod := shPod(name, tc.script, corev1.EnvVar{Name: "MARK", Value: mark})
			pod.Spec.NodeName = e.kl.NodeName()
			pod.Spec.TerminationGracePeriodSeconds = ptr.To(tc.grace)
			e.createPod(t, pod)
			e.waitPhase(t, name, corev1.PodRunning)
			waitFor(t, "process running", time.Minute, func() (bool, error) {
				b, _ := os.ReadFile(mark)
				return strings.TrimSpace(string(b)) == "running", nil
			})
			if err := e.cs.CoreV1().Pods(e.ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "pod object removed by the kubelet", time.Minute, func() (bool, error) {
				_, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
			if got := strings.TrimSpace(readFile(t, mark)); got != tc.want {
				t.Errorf("mark = %q, want %q", got, tc.want)
			}
		})
	}
}

func mustCreate(t *testing.T, create func() error) {
	t.Helper()
	if err := create(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func resourceQuantity(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}
