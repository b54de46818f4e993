package kubee2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/migrate"
)

// The application of the migration tests: a Deployment, a StatefulSet and a Pod without a
// controller, all mounting the source claim and writing, each to its own file under live/ (named by the Pod's
// UID), a counter that grows ten times a second. Commands other than krsync run as written
// under the test kubelet; $DATA is the mount path, which it maps to the claim's directory.
const (
	appDeployment  = "web"
	appStatefulSet = "db"
	appPod         = "solo"
	appSelector    = "app in (" + appDeployment + "," + appStatefulSet + "," + appPod + ")"
	liveDir        = "live"
	appScript      = `mkdir -p "$DATA/live" && n=0 && while :; do n=$((n+1)); echo "$n" > "$DATA/live/$POD_UID"; sleep 0.1; done`
)

// migrateTimeout bounds one krsync migrate run on the shared 2-core machine.
const migrateTimeout = 4 * time.Minute

func appTemplate(name string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "app", Image: "busybox", Command: []string{"sh", "-c", appScript},
				Env: []corev1.EnvVar{
					{Name: "DATA", Value: "/data"},
					{Name: "POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: sourceClaim},
			}}},
		},
	}
}

// startApp creates the Deployment (2 replicas), the StatefulSet (1) and the Pod on the
// source claim and waits until all four Pods are ready and have written.
func (c *testCluster) startApp() {
	c.t.Helper()
	ctx := context.Background()
	sel := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	}
	_, err := c.cs.AppsV1().Deployments(c.ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: appDeployment},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: sel(appDeployment), Template: appTemplate(appDeployment)},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	_, err = c.cs.AppsV1().StatefulSets(c.ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: appStatefulSet},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), Selector: sel(appStatefulSet), Template: appTemplate(appStatefulSet),
			ServiceName: appStatefulSet},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	solo := appTemplate(appPod)
	_, err = c.cs.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: appPod, Labels: solo.Labels}, Spec: solo.Spec}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.waitAppOn(sourceClaim, 2, 1)
	c.waitFor("the application's four Pods to write", time.Minute, func() (bool, error) {
		entries, err := os.ReadDir(filepath.Join(c.src, liveDir))
		return err == nil && len(entries) >= 4, nil
	})
}

// waitAppOn waits until the Deployment and the StatefulSet run the given replicas, all
// ready, from a template that mounts claim, with no migration record left on them.
func (c *testCluster) waitAppOn(claim string, web, db int32) {
	c.t.Helper()
	ctx := context.Background()
	c.waitFor("the application ready on "+claim, 2*time.Minute, func() (bool, error) {
		d, err := c.cs.AppsV1().Deployments(c.ns).Get(ctx, appDeployment, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s, err := c.cs.AppsV1().StatefulSets(c.ns).Get(ctx, appStatefulSet, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		onClaim := templateClaim(&d.Spec.Template.Spec) == claim && templateClaim(&s.Spec.Template.Spec) == claim
		counts := *d.Spec.Replicas == web && *s.Spec.Replicas == db
		ready := d.Status.ObservedGeneration == d.Generation && d.Status.Replicas == web && d.Status.ReadyReplicas == web && d.Status.UpdatedReplicas == web &&
			s.Status.ObservedGeneration == s.Generation && s.Status.Replicas == db && s.Status.ReadyReplicas == db
		_, dRec := d.Annotations[migrate.AnnoReplicas]
		_, sRec := s.Annotations[migrate.AnnoReplicas]
		solo, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, appPod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		soloReady := solo.DeletionTimestamp == nil && templateClaim(&solo.Spec) == claim && podIsReady(solo)
		return onClaim && counts && ready && !dRec && !sRec && soloReady, nil
	})
	// The Pods themselves, not only the templates, mount the claim.
	pods, err := c.cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: appSelector})
	if err != nil {
		c.t.Fatal(err)
	}
	running := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		running++
		if got := templateClaim(&p.Spec); got != claim {
			c.t.Errorf("Pod %s mounts claim %s, want %s", p.Name, got, claim)
		}
	}
	if running != int(web+db)+1 {
		c.t.Errorf("%d application Pods, want %d", running, web+db+1)
	}
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func templateClaim(spec *corev1.PodSpec) string {
	for _, v := range spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	return ""
}

// toDestClaim are the flags that name the harness's destination claim as the new claim.
var toDestClaim = []string{"--dest-pvc", destClaim}

// migrateArgs is `krsync migrate` of the source claim to the new claim dest names, on this
// cluster's namespace.
func (c *testCluster) migrateArgs(dest []string, extra ...string) []string {
	args := append([]string{"migrate", "--kubeconfig", cluster.Require(c.t).Kubeconfig, "-n", c.ns,
		"--source-pvc", sourceClaim, "--image", "krsync:e2e", "--timeout", "3m", "--log-format", "json"}, dest...)
	return append(args, extra...)
}

// migrateProcess is krsync migrate running as a child process (stdout and stderr apart).
type migrateProcess = testbin.Process

func (c *testCluster) startMigrate(args []string) *migrateProcess {
	c.t.Helper()
	p := testbin.StartProcess(c.t, "krsync migrate", exec.Command(c.bin, args...), false)
	p.Timeout = migrateTimeout
	return p
}

// runMigrate runs krsync migrate to its end and returns its stdout; it fails the test on a
// non-zero exit.
func (c *testCluster) runMigrate(dest []string, extra ...string) string {
	c.t.Helper()
	p := c.startMigrate(c.migrateArgs(dest, extra...))
	if code := p.Wait(c.t); code != 0 {
		c.t.Fatalf("krsync migrate %v: exit %d\nstdout:\n%s\nstderr:\n%s", extra, code, p.Stdout.String(), p.Stderr.String())
	}
	c.t.Logf("krsync migrate %v:\n%s", extra, p.Stdout.String())
	return p.Stdout.String()
}

// phase is the migration step the new claim records, "" for none.
func (c *testCluster) phase(claim string) string {
	c.t.Helper()
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(c.ns).Get(context.Background(), claim, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return pvc.Annotations[migrate.AnnoPhase]
}

// copyJob is the coordinator Job of krsync migrate's copies to claim.
func (c *testCluster) copyJob(claim string) string {
	return kube.NamesFor(migrate.Config{Namespace: c.ns, DestPVC: claim}.CopyRun()).Coordinator
}

// copyRunning says whether the coordinator Job of the given pass to claim runs (its Pod is
// running).
func (c *testCluster) copyRunning(claim, pass string) (bool, error) {
	name := c.copyJob(claim)
	job, err := c.cs.BatchV1().Jobs(c.ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil || !strings.HasSuffix(job.Labels[kube.CopyPassLabel], "-"+pass) {
		return false, err
	}
	for _, p := range c.pods(name) {
		if p.Status.Phase == corev1.PodRunning {
			return true, nil
		}
	}
	return false, nil
}

// migratedDataEqual compares the source with the new claim's directory dst, with the
// independent comparator, the application's live/ aside; then every file the Pods on the
// source wrote must be in dst with its last contents (the writes after the warm copy), and
// the Pods running now must write in dst, not on the source.
func (c *testCluster) migratedDataEqual(dst string) {
	c.t.Helper()
	err := treecmp.Equal(c.src, dst, treecmp.Options{Exclude: func(rel string) bool {
		return rel == liveDir || rel == stateDir
	}})
	if err != nil {
		c.t.Error(err)
	}
	old, err := os.ReadDir(filepath.Join(c.src, liveDir))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, e := range old {
		want, err := os.ReadFile(filepath.Join(c.src, liveDir, e.Name()))
		if err != nil {
			c.t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dst, liveDir, e.Name()))
		if err != nil || !bytes.Equal(got, want) {
			c.t.Errorf("live/%s on the destination: %q, %v; want the source's last write %q", e.Name(), got, err, want)
		}
	}
	c.podsWriteOn(dst, c.src)
}

// podsWriteOn waits until every running application Pod has written its file in dir's
// live/, and checks it wrote none in other's.
func (c *testCluster) podsWriteOn(dir, other string) {
	c.t.Helper()
	pods, err := c.cs.CoreV1().Pods(c.ns).List(context.Background(), metav1.ListOptions{LabelSelector: appSelector})
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		c.waitFor("Pod "+p.Name+" to write on "+dir, time.Minute, func() (bool, error) {
			_, err := os.Stat(filepath.Join(dir, liveDir, string(p.UID)))
			return err == nil, nil
		})
		if _, err := os.Stat(filepath.Join(other, liveDir, string(p.UID))); err == nil {
			c.t.Errorf("Pod %s wrote on %s too", p.Name, other)
		}
	}
}

// TestMigrateDeploymentAndStatefulSet: --dry-run prints the plan and changes nothing; then
// krsync migrate moves a running Deployment and StatefulSet from the source claim to the
// destination claim: a file the test writes on the source during the warm copy, and the
// application's own writes after it, are on the destination; the trees are equal; the
// workloads run on the destination with their replica counts; the downtime is printed; a
// rerun has nothing to do.
func TestMigrateDeploymentAndStatefulSet(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	// The big file under --bwlimit keeps the warm copy going for seconds.
	c.generate(treegen.Spec{Seed: 23, Files: 300, Hostile: true, BigFiles: 1, BigSize: 12 << 20})
	c.startApp()

	plan := c.runMigrate(toDestClaim, "--dry-run")
	for _, want := range []string{"Deployment/web: scale 2 -> 0", "StatefulSet/db: scale 1 -> 0", "Pod/solo (no controller)", "warm copy while the application runs"} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan does not say %q:\n%s", want, plan)
		}
	}
	if got := c.phase(destClaim); got != "" {
		t.Fatalf("--dry-run recorded phase %q on the destination claim", got)
	}
	c.waitAppOn(sourceClaim, 2, 1)

	p := c.startMigrate(c.migrateArgs(toDestClaim, "--rsync-opts", slowRsync))
	c.waitFor("the warm copy to run", 2*time.Minute, func() (bool, error) { return c.copyRunning(destClaim, "warm") })
	changed := filepath.Join(c.src, "written-during-warm-copy")
	if err := os.WriteFile(changed, []byte("after the warm copy began\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if running, err := c.copyRunning(destClaim, "warm"); err != nil || !running {
		t.Fatalf("the warm copy ended before the test wrote to the source (running %v, %v): make it longer", running, err)
	}
	if code := p.Wait(t); code != 0 {
		t.Fatalf("krsync migrate: exit %d\nstdout:\n%s\nstderr:\n%s", code, p.Stdout.String(), p.Stderr.String())
	}
	out := p.Stdout.String()
	t.Logf("krsync migrate:\n%s", out)
	if !strings.Contains(out, "downtime ") {
		t.Errorf("krsync migrate does not print the downtime:\n%s", out)
	}
	c.waitAppOn(destClaim, 2, 1)
	if got := c.phase(destClaim); got != string(migrate.Done) {
		t.Errorf("the destination claim records phase %q, want %q", got, migrate.Done)
	}
	if _, err := os.Stat(filepath.Join(c.dst, "written-during-warm-copy")); err != nil {
		t.Errorf("the file written on the source during the warm copy is not on the destination: %v", err)
	}
	c.migratedDataEqual(c.dst)
	if _, err := c.cs.BatchV1().Jobs(c.ns).Get(context.Background(), c.copyJob(destClaim), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the copy's coordinator Job is still there after the migration: %v", err)
	}
	if again := c.runMigrate(toDestClaim); !strings.Contains(again, "already") {
		t.Errorf("a rerun after the migration does not say it is done:\n%s", again)
	}
}

// startAndWaitFinalCopy starts krsync migrate without the warm copy and waits until the
// workloads are down and the final copy runs, recording the replica counts on them.
func (c *testCluster) startAndWaitFinalCopy(dest []string, claim string) *migrateProcess {
	c.t.Helper()
	p := c.startMigrate(c.migrateArgs(dest, "--no-warm-copy", "--rsync-opts", slowRsync))
	c.waitFor("the final copy to run", 2*time.Minute, func() (bool, error) {
		select {
		case <-p.Done():
			return false, errors.New("krsync migrate ended before the final copy: " + p.Stderr.String())
		default:
		}
		return c.copyRunning(claim, "final")
	})
	ctx := context.Background()
	d, err := c.cs.AppsV1().Deployments(c.ns).Get(ctx, appDeployment, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	s, err := c.cs.AppsV1().StatefulSets(c.ns).Get(ctx, appStatefulSet, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	if *d.Spec.Replicas != 0 || d.Annotations[migrate.AnnoReplicas] != "2" || *s.Spec.Replicas != 0 || s.Annotations[migrate.AnnoReplicas] != "1" {
		c.t.Errorf("during the final copy: Deployment %d replicas (recorded %q), StatefulSet %d (recorded %q); want 0 with 2 and 1 recorded",
			*d.Spec.Replicas, d.Annotations[migrate.AnnoReplicas], *s.Spec.Replicas, s.Annotations[migrate.AnnoReplicas])
	}
	return p
}

// TestMigrateInterruptedResumes: krsync migrate --dest-storage-class creates the new claim
// (the old one's access modes and size, in that class, bound here to a volume made for it);
// killed (SIGKILL) during the final copy, with the workloads down, it resumes when run again
// with the same arguments: it follows the copy already running, switches and scales back to
// the recorded counts.
func TestMigrateInterruptedResumes(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 29, Files: 200, BigFiles: 1, BigSize: 12 << 20})
	const class = "e2e-fast"
	newClaim := sourceClaim + "-" + class // the default name
	dst := c.classVolume(class)
	c.startApp()
	dest := []string{"--dest-storage-class", class}
	p := c.startAndWaitFinalCopy(dest, newClaim)
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Wait(t)
	if got := c.phase(newClaim); got != string(migrate.ScaledDown) {
		t.Errorf("after the kill the new claim records phase %q, want %q", got, migrate.ScaledDown)
	}
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(c.ns).Get(context.Background(), newClaim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "10Gi" || *pvc.Spec.StorageClassName != class ||
		len(pvc.Spec.AccessModes) != 1 || pvc.Spec.AccessModes[0] != corev1.ReadWriteMany {
		t.Errorf("the created claim: %s, class %s, %v; want 10Gi, %s, [ReadWriteMany] like the old one", got.String(), *pvc.Spec.StorageClassName, pvc.Spec.AccessModes, class)
	}

	// --dry-run says where the migration stands and changes nothing.
	if where := c.runMigrate(dest, "--dry-run"); !strings.Contains(where, `under way: the migration of source-pvc to `+newClaim) ||
		!strings.Contains(where, `after step "scaled-down"`) || !strings.Contains(where, "steps left: [final-copied switched done]") {
		t.Errorf("--dry-run of the interrupted migration does not say where it stands:\n%s", where)
	}
	if got := c.phase(newClaim); got != string(migrate.ScaledDown) {
		t.Errorf("after --dry-run the new claim records phase %q, want %q", got, migrate.ScaledDown)
	}

	out := c.runMigrate(dest, "--no-warm-copy", "--rsync-opts", slowRsync)
	if !strings.Contains(out, "resuming: the migration") {
		t.Errorf("the rerun does not say it resumes:\n%s", out)
	}
	if !strings.Contains(out, "took over the lock of krsync-migrate@") {
		t.Errorf("the rerun does not say it took over the killed run's lock:\n%s", out)
	}
	c.waitAppOn(newClaim, 2, 1)
	c.migratedDataEqual(dst)
}

// classVolume makes a volume of storage class class on a new directory, for a claim that
// krsync migrate creates in that class to bind to, and returns the directory.
func (c *testCluster) classVolume(class string) string {
	c.t.Helper()
	dir := filepath.Join(c.t.TempDir(), class)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	size := resource.MustParse("10Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: c.ns + "-" + class},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		},
	}
	if _, err := c.cs.CoreV1().PersistentVolumes().Create(context.Background(), pv, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		_ = c.cs.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	return dir
}

// TestMigrateRollback: while krsync migrate runs its final copy, a second run and a
// --rollback are refused; stopped by SIGTERM, it says how to resume; krsync migrate
// --rollback then stops the copy and puts the workloads back on the source claim with their
// replica counts; the destination claim is kept.
func TestMigrateRollback(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	// A big file keeps the final copy (--bwlimit=3m) running for about 40 s, through both
	// refused runs; SIGTERM ends it long before.
	c.generate(treegen.Spec{Seed: 31, Files: 200, BigFiles: 1, BigSize: 120 << 20})
	c.startApp()
	p := c.startAndWaitFinalCopy(toDestClaim, destClaim)
	// While it runs, a second run of the same migration and a --rollback are refused
	// (exit 2, one line naming the claim's lock) and change nothing.
	for _, extra := range [][]string{nil, {"--rollback"}} {
		second := c.startMigrate(c.migrateArgs(toDestClaim, extra...))
		code := second.Wait(t)
		msg := second.Stderr.String()
		if code != 2 || !strings.Contains(msg, "in use by another krsync migrate") {
			t.Errorf("krsync migrate %v while another runs: exit %d, want 2 and 'in use by another krsync migrate':\n%s", extra, code, msg)
		}
		if got := c.phase(destClaim); got != string(migrate.ScaledDown) {
			t.Errorf("after the refused krsync migrate %v the claim records phase %q, want %q", extra, got, migrate.ScaledDown)
		}
	}
	select {
	case <-p.Done():
		t.Fatalf("the first krsync migrate ended while the second was refused:\n%s", p.Stderr.String())
	default:
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(t); code == 0 {
		t.Errorf("krsync migrate stopped by SIGTERM exited 0")
	}
	if msg := p.Stderr.String(); !strings.Contains(msg, "run the same command again to resume") {
		t.Errorf("krsync migrate stopped by SIGTERM does not say how to resume:\n%s", msg)
	}

	out := c.runMigrate(toDestClaim, "--rollback")
	if !strings.Contains(out, "rolled back") {
		t.Errorf("--rollback does not say it rolled back:\n%s", out)
	}
	c.waitAppOn(sourceClaim, 2, 1)
	if got := c.phase(destClaim); got != string(migrate.RolledBack) {
		t.Errorf("the destination claim records phase %q, want %q", got, migrate.RolledBack)
	}
	if _, err := c.cs.BatchV1().Jobs(c.ns).Get(context.Background(), c.copyJob(destClaim), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the copy's coordinator Job is still there after --rollback: %v", err)
	}
	for _, claim := range []string{sourceClaim, destClaim} {
		if _, err := c.cs.CoreV1().PersistentVolumeClaims(c.ns).Get(context.Background(), claim, metav1.GetOptions{}); err != nil {
			t.Errorf("claim %s after --rollback: %v", claim, err)
		}
	}
	// The application writes on the source again, not on the destination.
	c.podsWriteOn(c.src, c.dst)
}

// TestMigrateDaemonSetAndCronJob: a DaemonSet (paused by a nodeSelector no node has, as it
// has no replica count) and a CronJob (suspended) move to the destination claim; both end on
// it with their pause and suspension undone, the DaemonSet's Pod ready on the new claim.
func TestMigrateDaemonSetAndCronJob(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 37, Files: 150})
	ctx := context.Background()
	agent := appTemplate("agent")
	_, err := c.cs.AppsV1().DaemonSets(c.ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec:       appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: agent.Labels}, Template: agent},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nightly := appTemplate("nightly")
	nightly.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	nightly.Spec.Containers[0].Command = []string{"sh", "-c", `mkdir -p "$DATA/live" && echo ran > "$DATA/live/$POD_UID"`}
	_, err = c.cs.BatchV1().CronJobs(c.ns).Create(ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
		Spec: batchv1.CronJobSpec{Schedule: "* * * * *", Suspend: ptr.To(false),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: nightly}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.waitDaemonSetOn(sourceClaim)

	out := c.runMigrate(toDestClaim, "--no-warm-copy")
	for _, want := range []string{"DaemonSet/agent: pause", "CronJob/nightly: suspend", "downtime "} {
		if !strings.Contains(out, want) {
			t.Errorf("krsync migrate does not say %q:\n%s", want, out)
		}
	}
	c.waitDaemonSetOn(destClaim)
	cj, err := c.cs.BatchV1().CronJobs(c.ns).Get(ctx, "nightly", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := templateClaim(&cj.Spec.JobTemplate.Spec.Template.Spec); got != destClaim || cj.Spec.Suspend == nil || *cj.Spec.Suspend {
		t.Errorf("CronJob after the migration: claim %s, suspend %v; want %s, false", got, cj.Spec.Suspend, destClaim)
	}
	if _, ok := cj.Annotations[migrate.AnnoSuspended]; ok {
		t.Errorf("CronJob keeps the migration's record: %v", cj.Annotations)
	}
	if err := treecmp.Equal(c.src, c.dst, treecmp.Options{Exclude: func(rel string) bool { return rel == liveDir || rel == stateDir }}); err != nil {
		t.Error(err)
	}
}

// waitDaemonSetOn waits until the DaemonSet agent runs one ready Pod, from a template that
// mounts claim and is not paused, and that Pod mounts claim.
func (c *testCluster) waitDaemonSetOn(claim string) {
	c.t.Helper()
	ctx := context.Background()
	c.waitFor("DaemonSet agent ready on "+claim, 2*time.Minute, func() (bool, error) {
		d, err := c.cs.AppsV1().DaemonSets(c.ns).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, paused := d.Spec.Template.Spec.NodeSelector["krsync.io/migrate-paused"]
		_, recorded := d.Annotations[migrate.AnnoPaused]
		s := d.Status
		if paused || recorded || templateClaim(&d.Spec.Template.Spec) != claim || s.ObservedGeneration != d.Generation ||
			s.DesiredNumberScheduled != 1 || s.NumberReady != 1 || s.UpdatedNumberScheduled != 1 {
			return false, nil
		}
		pods, err := c.cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil {
			return false, err
		}
		live := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				live++
				if templateClaim(&p.Spec) != claim || !podIsReady(&p) {
					return false, nil
				}
			}
		}
		return live == 1, nil
	})
}

// TestMigrateReadWriteOnceWarmCopyOnTheAppsNode: with ReadWriteOnce claims and two Nodes, the
// warm copy runs where the application's Pod mounts the source: the coordinator Job asks for
// that Node, and its Pod and the workers run there.
func TestMigrateReadWriteOnceWarmCopyOnTheAppsNode(t *testing.T) {
	c := newCluster(t, clusterOptions{nodes: 2, access: corev1.ReadWriteOnce})
	c.generate(treegen.Spec{Seed: 41, Files: 100, BigFiles: 1, BigSize: 12 << 20})
	ctx := context.Background()
	one := appTemplate("one")
	_, err := c.cs.AppsV1().Deployments(c.ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "one"},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: one.Labels}, Template: one},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var node string
	c.waitFor("the application's Pod running", 2*time.Minute, func() (bool, error) {
		pods, err := c.cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=one"})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" {
				node = p.Spec.NodeName
				return true, nil
			}
		}
		return false, nil
	})

	p := c.startMigrate(c.migrateArgs(toDestClaim, "--rsync-opts", slowRsync))
	job := c.copyJob(destClaim)
	workers := kube.NamesFor(migrate.Config{Namespace: c.ns, DestPVC: destClaim}.CopyRun()).Worker
	c.waitFor("the warm copy to run", 2*time.Minute, func() (bool, error) { return c.copyRunning(destClaim, "warm") })
	j, err := c.cs.BatchV1().Jobs(c.ns).Get(ctx, job, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pin := fmt.Sprint(j.Spec.Template.Spec.Affinity); !strings.Contains(pin, node) {
		t.Errorf("the warm copy's coordinator Job does not ask for the application's node %s: affinity %s", node, pin)
	}
	c.waitFor("a worker of the warm copy", 2*time.Minute, func() (bool, error) {
		return len(c.pods(workers)) > 0, nil
	})
	for _, name := range []string{job, workers} {
		for _, pod := range c.pods(name) {
			if pod.Spec.NodeName != node {
				t.Errorf("warm copy Pod %s runs on %s, want the application's node %s", pod.Name, pod.Spec.NodeName, node)
			}
		}
	}
	if code := p.Wait(t); code != 0 {
		t.Fatalf("krsync migrate: exit %d\nstdout:\n%s\nstderr:\n%s", code, p.Stdout.String(), p.Stderr.String())
	}
	if err := treecmp.Equal(c.src, c.dst, treecmp.Options{Exclude: func(rel string) bool { return rel == liveDir || rel == stateDir }}); err != nil {
		t.Error(err)
	}
}

// TestMigrateFailedWarmCopyStopsBeforeTheDowntime: a warm copy that fails (the source holds
// the name of the coordinator's state directory, which it refuses) stops krsync migrate with
// one line and exit 1 while the application still runs on the source, untouched; once the
// cause is gone, the same command replaces the failed copy and completes.
func TestMigrateFailedWarmCopyStopsBeforeTheDowntime(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 43, Files: 100})
	clash := filepath.Join(c.src, stateDir)
	if err := os.WriteFile(clash, []byte("not krsync's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.startApp()
	p := c.startMigrate(c.migrateArgs(toDestClaim))
	if code := p.Wait(t); code != 1 {
		t.Fatalf("krsync migrate with a failing warm copy: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, p.Stdout.String(), p.Stderr.String())
	}
	t.Logf("krsync migrate with a failing warm copy: %s", p.Stderr.String())
	if msg := p.Stderr.String(); !strings.Contains(msg, "warm copy") || !strings.Contains(msg, "nothing was scaled down") || strings.Count(msg, "\n") != 1 {
		t.Errorf("stderr of the failed warm copy, want one line saying nothing was scaled down:\n%s", msg)
	}
	if got := c.phase(destClaim); got != string(migrate.Planned) {
		t.Errorf("after the failed warm copy the destination claim records phase %q, want %q", got, migrate.Planned)
	}
	c.waitAppOn(sourceClaim, 2, 1)

	if err := os.Remove(clash); err != nil {
		t.Fatal(err)
	}
	out := c.runMigrate(toDestClaim)
	if !strings.Contains(out, "resuming: the migration") {
		t.Errorf("the rerun does not say it resumes:\n%s", out)
	}
	c.waitAppOn(destClaim, 2, 1)
	c.migratedDataEqual(c.dst)
}

// TestMigrateRefusesAClaimHoldingData: an existing new claim that holds data krsync did not
// write (a file at its top; an empty lost+found is fine) is not mirrored over: the warm
// copy's coordinator refuses it, krsync migrate stops with exit 1 saying so and naming
// --overwrite-dest, the file and the application untouched; with --overwrite-dest the same
// command completes and the claim ends an exact copy.
func TestMigrateRefusesAClaimHoldingData(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 53, Files: 100})
	precious := filepath.Join(c.dst, "#precious")
	if err := os.WriteFile(precious, []byte("not krsync's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(c.dst, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	c.startApp()
	p := c.startMigrate(c.migrateArgs(toDestClaim))
	if code := p.Wait(t); code != 1 {
		t.Fatalf("krsync migrate into a claim holding data: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, p.Stdout.String(), p.Stderr.String())
	}
	if msg := p.Stderr.String(); !strings.Contains(msg, kube.DestNotEmpty) || !strings.Contains(msg, "#precious") ||
		!strings.Contains(msg, "--overwrite-dest") || strings.Count(msg, "\n") != 1 {
		t.Errorf("stderr, want one line naming the data and --overwrite-dest:\n%s", msg)
	}
	if data, err := os.ReadFile(precious); err != nil || string(data) != "not krsync's\n" {
		t.Errorf("the claim's own file after the refusal: %q, %v", data, err)
	}
	if got := c.phase(destClaim); got != string(migrate.Planned) {
		t.Errorf("after the refusal the claim records phase %q, want %q", got, migrate.Planned)
	}
	c.waitAppOn(sourceClaim, 2, 1)

	c.runMigrate(toDestClaim, "--overwrite-dest")
	c.waitAppOn(destClaim, 2, 1)
	c.migratedDataEqual(c.dst)
}

// TestMigrateFailedFinalCopyKeepsTheWorkloadsDown: a final pass that fails (the source holds
// the coordinator's state directory name) stops krsync migrate with one line and exit 1,
// the workloads still down on the source with their counts recorded; once the cause is gone
// the same command completes the migration.
func TestMigrateFailedFinalCopyKeepsTheWorkloadsDown(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	c.generate(treegen.Spec{Seed: 47, Files: 100})
	clash := filepath.Join(c.src, stateDir)
	if err := os.WriteFile(clash, []byte("not krsync's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.startApp()
	p := c.startMigrate(c.migrateArgs(toDestClaim, "--no-warm-copy"))
	if code := p.Wait(t); code != 1 {
		t.Fatalf("krsync migrate with a failing final copy: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, p.Stdout.String(), p.Stderr.String())
	}
	msg := p.Stderr.String()
	t.Logf("krsync migrate with a failing final copy: %s", msg)
	if !strings.Contains(msg, "final copy") || !strings.Contains(msg, "the workloads stay scaled down on "+sourceClaim) || strings.Count(msg, "\n") != 1 {
		t.Errorf("stderr of the failed final copy, want one line saying the workloads stay down:\n%s", msg)
	}
	if got := c.phase(destClaim); got != string(migrate.ScaledDown) {
		t.Errorf("after the failed final copy the destination claim records phase %q, want %q", got, migrate.ScaledDown)
	}
	ctx := context.Background()
	d, err := c.cs.AppsV1().Deployments(c.ns).Get(ctx, appDeployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 0 || d.Annotations[migrate.AnnoReplicas] != "2" || templateClaim(&d.Spec.Template.Spec) != sourceClaim {
		t.Errorf("after the failed final copy: Deployment %d replicas (recorded %q) on %s; want 0, \"2\", %s",
			*d.Spec.Replicas, d.Annotations[migrate.AnnoReplicas], templateClaim(&d.Spec.Template.Spec), sourceClaim)
	}
	if pods, err := c.cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: appSelector}); err != nil || len(pods.Items) != 0 {
		t.Errorf("after the failed final copy application Pods run: %d, %v", len(pods.Items), err)
	}

	if err := os.Remove(clash); err != nil {
		t.Fatal(err)
	}
	c.runMigrate(toDestClaim, "--no-warm-copy")
	c.waitAppOn(destClaim, 2, 1)
	c.migratedDataEqual(c.dst)
}
