package bench

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/krsync/krsync/internal/testing/kubelet"
	"github.com/krsync/krsync/internal/testing/kubeplane"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/kube"
	"github.com/krsync/krsync/migrate"
)

// The migrate benchmark measures the downtime of moving an application's volume (the
// 100,000-file tree by default) to an empty new claim, on the real control plane with the
// test kubelet (pods are local processes, claims are hostPath volumes on this disk):
//
//   - krsync migrate: the warm copy while the application runs, during which the application
//     changes 1% of its files (rewritten with other bytes of the same size), then the
//     scale-down, the final --mirror pass with --verify, the switch and the scale-up;
//   - the manual procedure, scale down, full copy, scale up, done by `krsync migrate
//     --no-warm-copy` (the same steps without the warm copy, so the comparison measures the
//     warm copy and nothing else); the application changes the same 1% before it.
//
// The downtime is what krsync migrate prints: from the start of the scale-down until the
// application is ready again on the new claim. The two alternate, round by round, each on a
// namespace and an empty new claim of its own; the new claim is compared with the old one
// (treecmp) after every run. It prints the medians and the ratio manual / krsync migrate.
//
//	KRSYNC_BENCH_MIGRATE=1 go test -run '^$' -bench Migrate -benchtime 1x -timeout 60m -v ./bench/
//	KRSYNC_BENCH_MIGRATE=1 KRSYNC_BENCH_SHAPES=10k KRSYNC_BENCH_ROUNDS=1 go test ...
//
// It runs only when KRSYNC_BENCH_MIGRATE=1, so `make bench` stays free of a control plane.
// The old claim is a private copy of the cached tree (the application writes to it), kept as
// krsync-bench-migrate-<shape>/old in $KRSYNC_BENCH_DIR.

// migrateChangeEvery picks the 1% of files the application changes.
const migrateChangeEvery = 100

// migrateAppScript is the application: it only holds the claim mounted; the bench process
// makes its changes (the kubelet runs pods as local processes on the same files).
const migrateAppScript = `while :; do sleep 1; done`

func BenchmarkMigrate(b *testing.B) {
	if os.Getenv("KRSYNC_BENCH_MIGRATE") != "1" {
		b.Skip("the migrate benchmark runs with KRSYNC_BENCH_MIGRATE=1 (it needs the test control plane)")
	}
	shapes := selectedSyncShapes(b)
	rounds := benchIntList(b, "KRSYNC_BENCH_ROUNDS", "3")[0]
	rsync := lookBinary(b, "rsync")
	krsync := buildKrsync(b)
	plane := cluster.Require(b)
	rc, err := plane.RESTConfig()
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	base := benchDir()
	scratch := benchScratch(b, base, "migrate")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kl, err := kubelet.Start(ctx, kubelet.Config{
		RESTConfig: rc, NodeName: kubeplane.UniqueName("bench-node"), Binary: krsync,
		Dir: filepath.Join(scratch, "kubelet"), Logger: zerolog.New(zerolog.NewTestWriter(b)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := kl.Stop(); err != nil {
			b.Error(err)
		}
	}()
	for _, shape := range shapes {
		b.Run(shape.name, func(b *testing.B) {
			tree := syncBenchTree(b, base, shape)
			old := migrateOldCopy(b, rsync, tree, filepath.Join(base, "krsync-bench-migrate-"+shape.name))
			files := regularFiles(b, old)
			m := &migrateBench{b: b, cs: cs, krsync: krsync, kubeconfig: plane.Kubeconfig, old: old, scratch: scratch, files: files}
			for b.Loop() {
				var warm, manual []time.Duration
				for round := range rounds {
					warm = append(warm, m.run(round, true))
					manual = append(manual, m.run(round, false))
				}
				m.report(shape.name, warm, manual)
			}
		})
	}
}

// migrateOldCopy is the old claim's tree: a copy of the cached tree that the application may
// change, made once (dir/old.complete marks it whole).
func migrateOldCopy(b *testing.B, rsync, tree, dir string) string {
	b.Helper()
	old := filepath.Join(dir, "old")
	if _, err := os.Stat(old + ".complete"); err == nil {
		return old
	}
	if err := os.RemoveAll(old); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(rsync, "-aH", "--numeric-ids", tree+"/", old+"/").CombinedOutput(); err != nil {
		b.Fatalf("copy the tree for the old claim: %v: %s", err, out)
	}
	if err := os.WriteFile(old+".complete", nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return old
}

// regularFiles lists the regular files of root, sorted, relative.
func regularFiles(b *testing.B, root string) []string {
	b.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	sort.Strings(files)
	return files
}

type migrateBench struct {
	b                  *testing.B
	cs                 kubernetes.Interface
	krsync, kubeconfig string
	old, scratch       string
	files              []string
	changed, runs      int
}

// run migrates the application once, with or without the warm copy, and returns the
// downtime krsync migrate measured.
func (m *migrateBench) run(round int, warmCopy bool) time.Duration {
	b := m.b
	b.Helper()
	ctx := context.Background()
	m.runs++
	ns := kubeplane.Namespace(b, m.cs)
	newDir := filepath.Join(m.scratch, fmt.Sprintf("new-%d", m.runs))
	if err := os.MkdirAll(newDir, 0o755); err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(newDir)
	m.claim(ns, "old", m.old)
	m.claim(ns, "new", newDir)
	m.startApp(ns)

	args := []string{"--log-format=json", "migrate", "--kubeconfig", m.kubeconfig, "-n", ns, "--source-pvc", "old",
		"--dest-pvc", "new", "--image", "krsync:bench", "--timeout", "30m"}
	if !warmCopy {
		args = append(args, "--no-warm-copy")
		m.change(round) // the application's changes, before the downtime as during the warm copy
	}
	cmd := exec.Command(m.krsync, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if warmCopy {
		job := kube.NamesFor(migrate.Config{Namespace: ns, DestPVC: "new"}.CopyRun()).Coordinator
		m.waitWarmCopy(ns, job)
		m.change(round)
		if !m.jobRunning(ns, job) {
			b.Fatalf("the warm copy ended before the application's changes were written: the measure would not include them")
		}
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("krsync migrate: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	match := regexp.MustCompile(`downtime (\S+) \(scale-down to ready\)`).FindStringSubmatch(stdout.String())
	if match == nil {
		b.Fatalf("krsync migrate printed no downtime:\n%s", stdout.String())
	}
	down, err := time.ParseDuration(match[1])
	if err != nil {
		b.Fatal(err)
	}
	if err := treecmp.Equal(m.old, newDir, treecmp.Options{}); err != nil {
		b.Fatalf("after krsync migrate (warm copy %v) the new claim differs from the old one: %v", warmCopy, err)
	}
	if err := m.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		b.Logf("delete namespace %s: %v", ns, err)
	}
	b.Logf("round %d, warm copy %v: downtime %s", round, warmCopy, down)
	return down
}

// claim makes a hostPath volume on dir and a claim bound to it.
func (m *migrateBench) claim(ns, name, dir string) {
	b := m.b
	b.Helper()
	ctx := context.Background()
	size := resource.MustParse("100Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: name},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		},
	}
	if _, err := m.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = m.cs.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, VolumeName: pv.Name, StorageClassName: ptr.To(""),
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if _, err := m.cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
}

// startApp runs the application, a Deployment of one Pod mounting the old claim, until ready.
func (m *migrateBench) startApp(ns string) {
	b := m.b
	b.Helper()
	labels := map[string]string{"app": "app"}
	_, err := m.cs.AppsV1().Deployments(ns).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{Name: "app", Image: "busybox", Command: []string{"sh", "-c", migrateAppScript},
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "old"}}}},
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	m.poll("the application ready", func() bool {
		d, err := m.cs.AppsV1().Deployments(ns).Get(context.Background(), "app", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 1
	})
}

// change rewrites 1% of the files (a different 1% each round) with other bytes of the same
// size and a new mtime, as the application would.
func (m *migrateBench) change(round int) {
	b := m.b
	b.Helper()
	rng := rand.New(rand.NewPCG(uint64(round), uint64(m.runs)))
	n := 0
	for i, rel := range m.files {
		if i%migrateChangeEvery != round%migrateChangeEvery {
			continue
		}
		p := filepath.Join(m.old, rel)
		info, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		data := make([]byte, info.Size())
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(p, data, info.Mode().Perm()); err != nil {
			b.Fatal(err)
		}
		n++
	}
	m.changed = n
}

// waitWarmCopy waits until the warm copy's coordinator Job runs.
func (m *migrateBench) waitWarmCopy(ns, job string) {
	m.b.Helper()
	m.poll("the warm copy to run", func() bool { return m.jobRunning(ns, job) })
}

func (m *migrateBench) jobRunning(ns, name string) bool {
	job, err := m.cs.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || !strings.HasSuffix(job.Labels[kube.CopyPassLabel], "-warm") {
		return false
	}
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return false
		}
	}
	return job.Status.Active > 0
}

// poll waits for cond, failing the benchmark after ten minutes.
func (m *migrateBench) poll(what string, cond func() bool) {
	m.b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			m.b.Fatalf("%s: not within 10m", what)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
}

// report prints the medians and the ratio manual / krsync migrate.
func (m *migrateBench) report(shape string, warm, manual []time.Duration) {
	var out bytes.Buffer
	fmt.Fprintf(&out, "\nmigrate %s: %d files, %d changed by the application (1%%), %d rounds, downtime (scale-down to ready), median [all]\n",
		shape, len(m.files), m.changed, len(warm))
	w := tabwriter.NewWriter(&out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "procedure\tdowntime\truns\n")
	fmt.Fprintf(w, "krsync migrate (warm copy, final --mirror pass)\t%s\t%v\n", median(warm).Round(time.Millisecond), warm)
	fmt.Fprintf(w, "manual: scale down, full copy, scale up (--no-warm-copy)\t%s\t%v\n", median(manual).Round(time.Millisecond), manual)
	w.Flush()
	fmt.Fprintf(&out, "manual / krsync migrate: %.2fx\n", float64(median(manual))/float64(median(warm)))
	fmt.Print(out.String())
}
