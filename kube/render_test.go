package kube_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/krsync/krsync/kube"
)

// TestDefaultRenderEqualsManifestsDir proves the repository's manifests/ is exactly what
// `krsync manifests --output-dir` writes with the defaults (and the published token).
func TestDefaultRenderEqualsManifestsDir(t *testing.T) {
	files, err := kube.Render(kube.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := filepath.Glob("../manifests/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(onDisk) != len(files) {
		t.Errorf("manifests/ has %d files, Render gives %d", len(onDisk), len(files))
	}
	for _, f := range files {
		want, err := os.ReadFile(filepath.Join("../manifests", f.Name))
		if err != nil {
			t.Errorf("manifests/%s: %v (regenerate: go run . manifests --token %s --output-dir manifests)", f.Name, err, kube.PublishedToken)
			continue
		}
		if !bytes.Equal(want, f.Data) {
			t.Errorf("manifests/%s differs from the rendered defaults (regenerate: go run . manifests --token %s --output-dir manifests)", f.Name, kube.PublishedToken)
		}
	}
}

// TestKustomizationListsEveryManifest: kubectl apply -k and -f see the same objects.
func TestKustomizationListsEveryManifest(t *testing.T) {
	files, err := kube.Render(kube.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	var names []string
	for _, f := range files {
		if f.Name == kube.Kustomization {
			if err := yaml.Unmarshal(f.Data, &k); err != nil {
				t.Fatal(err)
			}
			continue
		}
		names = append(names, f.Name)
	}
	if strings.Join(k.Resources, ",") != strings.Join(names, ",") {
		t.Errorf("kustomization resources = %v, want %v", k.Resources, names)
	}
}

// TestRenderedManifestsDecodeStrictly decodes every object with client-go's scheme, unknown
// fields refused, for the defaults and a customised set, and checks the customisation landed.
func TestRenderedManifestsDecodeStrictly(t *testing.T) {
	custom := kube.DefaultParams()
	custom.Namespace = "prod"
	custom.SourcePVC = "old-data"
	custom.DestPVC = "new-data"
	custom.Parallelism = 7
	custom.Image = "registry.local:5000/krsync:v1.2.3"
	custom.PullPolicy = "Always"
	custom.FpartOpts = `-f 500 -x "a b" -x .snapshot*`
	custom.RsyncOpts = "--archive --numeric-ids --hard-links -X"
	custom.Token = `tok"en: # with: yaml specials`
	custom.Mirror, custom.DryRun, custom.Verify, custom.VerifyChecksum = true, true, true, true
	custom.RequireEmptyDest = true
	custom.SourceSubPath, custom.DestSubPath = "exports/home dirs", "2024/copy"
	tests := []struct {
		name string
		p    kube.Params
	}{
		{"defaults", kube.DefaultParams()},
		{"customised", custom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files, err := kube.Render(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := kube.Decode(kube.Stream(files))
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != len(files)-1 {
				t.Fatalf("decoded %d objects from %d files", len(objs), len(files)-1)
			}
			m, err := kube.ParseManifests(objs)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if ns := metaNamespace(t, o); ns != tc.p.Namespace {
					t.Errorf("%T namespace %q, want %q", o, ns, tc.p.Namespace)
				}
			}
			if got := m.Secret.StringData["token"]; got != tc.p.Token {
				t.Errorf("token = %q, want %q", got, tc.p.Token)
			}
			c := m.Coordinator.Spec.Template.Spec.Containers[0]
			if c.Image != tc.p.Image || string(c.ImagePullPolicy) != tc.p.PullPolicy {
				t.Errorf("coordinator image %s %s, want %s %s", c.Image, c.ImagePullPolicy, tc.p.Image, tc.p.PullPolicy)
			}
			env := envMap(c.Env)
			if env["KRSYNC_FPART_OPTS"] != tc.p.FpartOpts || env["KRSYNC_PARALLELISM"] != itoa(tc.p.Parallelism) {
				t.Errorf("coordinator env %v", env)
			}
			for name, want := range map[string]bool{"KRSYNC_MIRROR": tc.p.Mirror, "KRSYNC_DRY_RUN": tc.p.DryRun,
				"KRSYNC_VERIFY": tc.p.Verify, "KRSYNC_VERIFY_CHECKSUM": tc.p.VerifyChecksum} {
				if env[name] != strconv.FormatBool(want) {
					t.Errorf("coordinator env %s=%q, want %v", name, env[name], want)
				}
			}
			if want := map[bool]string{true: "true", false: ""}[tc.p.RequireEmptyDest]; env["KRSYNC_REQUIRE_EMPTY_DEST"] != want {
				t.Errorf("coordinator env KRSYNC_REQUIRE_EMPTY_DEST=%q, want %q", env["KRSYNC_REQUIRE_EMPTY_DEST"], want)
			}
			checkClaims(t, "coordinator", m.Coordinator.Spec.Template.Spec.Volumes, tc.p)
			subPaths := map[string]string{}
			for _, vm := range c.VolumeMounts {
				subPaths[vm.Name] = vm.SubPath
			}
			if subPaths["source"] != tc.p.SourceSubPath || subPaths["dest"] != tc.p.DestSubPath {
				t.Errorf("coordinator subPaths %v, want source %q dest %q", subPaths, tc.p.SourceSubPath, tc.p.DestSubPath)
			}
			for _, vm := range m.WorkerJob.Spec.Template.Spec.Containers[0].VolumeMounts {
				if vm.SubPath != "" {
					t.Errorf("the worker template mounts %s with subPath %q: the coordinator's would not reach the workers", vm.Name, vm.SubPath)
				}
			}
			w := m.WorkerJob
			checkClaims(t, "worker", w.Spec.Template.Spec.Volumes, tc.p)
			if got := envMap(w.Spec.Template.Spec.Containers[0].Env)["KRSYNC_RSYNC_OPTS"]; got != tc.p.RsyncOpts {
				t.Errorf("worker rsync opts %q, want %q", got, tc.p.RsyncOpts)
			}
			checkWorkerJobShape(t, w)
		})
	}
}

func checkWorkerJobShape(t *testing.T, w *batchv1.Job) {
	t.Helper()
	if w.Spec.Completions != nil {
		t.Errorf("worker Job has completions %d: a work-queue Job has none", *w.Spec.Completions)
	}
	if w.Spec.BackoffLimit == nil || w.Spec.PodFailurePolicy == nil {
		t.Fatal("worker Job without backoffLimit or podFailurePolicy")
	}
	ignoresEvictions := false
	for _, r := range w.Spec.PodFailurePolicy.Rules {
		for _, c := range r.OnPodConditions {
			if r.Action == batchv1.PodFailurePolicyActionIgnore && c.Type == corev1.DisruptionTarget {
				ignoresEvictions = true
			}
		}
	}
	if !ignoresEvictions {
		t.Error("worker Job's podFailurePolicy does not ignore DisruptionTarget (evictions)")
	}
	spec := w.Spec.Template.Spec
	c := spec.Containers[0]
	// Resources and the Pod's securityContext come from the coordinator's Pod (inherit.go);
	// the capabilities are the container's own.
	if len(c.Resources.Requests)+len(c.Resources.Limits) > 0 || spec.SecurityContext != nil {
		t.Error("the worker template sets resources or a Pod securityContext: the coordinator's would not reach the workers")
	}
	if c.SecurityContext == nil || c.SecurityContext.Capabilities == nil {
		t.Error("worker container without its own securityContext (capabilities)")
	}
	for _, vm := range c.VolumeMounts {
		if vm.Name == "source" && !vm.ReadOnly {
			t.Error("worker mounts the source read-write")
		}
	}
}

func checkClaims(t *testing.T, who string, vols []corev1.Volume, p kube.Params) {
	t.Helper()
	want := map[string]string{"source": p.SourcePVC, "dest": p.DestPVC}
	for _, v := range vols {
		if w, ok := want[v.Name]; ok {
			if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != w {
				t.Errorf("%s volume %s: %+v, want claim %s", who, v.Name, v.VolumeSource, w)
			}
			if v.Name == "source" && !v.PersistentVolumeClaim.ReadOnly {
				t.Errorf("%s: source claim not read-only", who)
			}
			delete(want, v.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("%s: volumes missing: %v", who, want)
	}
}

func TestRenderRefusesBadParams(t *testing.T) {
	tests := []struct {
		name   string
		change func(*kube.Params)
		want   string
	}{
		{"bad claim", func(p *kube.Params) { p.SourcePVC = "Not_A_Name" }, "--source-pvc"},
		{"bad namespace", func(p *kube.Params) { p.Namespace = "a.b" }, "--namespace"},
		{"zero parallelism", func(p *kube.Params) { p.Parallelism = 0 }, "--parallelism"},
		{"image with space", func(p *kube.Params) { p.Image = "a b" }, "--image"},
		{"pull policy", func(p *kube.Params) { p.PullPolicy = "Sometimes" }, "--pull-policy"},
		{"empty token", func(p *kube.Params) { p.Token = " " }, "token"},
		{"dry run without mirror", func(p *kube.Params) { p.DryRun = true }, "--mirror"},
		{"absolute source subpath", func(p *kube.Params) { p.SourceSubPath = "/etc" }, "--source-subpath"},
		{"dest subpath with ..", func(p *kube.Params) { p.DestSubPath = "a/../.." }, "--dest-subpath"},
		{"unclean subpath", func(p *kube.Params) { p.DestSubPath = "a//b/" }, "--dest-subpath"},
		{"run name with a dot", func(p *kube.Params) { p.Name = "a.b" }, "--name"},
		{"run name starting with a digit", func(p *kube.Params) { p.Name = "1st" }, "--name"},
		{"run name too long", func(p *kube.Params) { p.Name = strings.Repeat("a", 46) }, "--name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := kube.DefaultParams()
			tc.change(&p)
			_, err := kube.Render(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestDecodeRefusesUnknownFields(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"unknown field", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\nbogus: 1\n"},
		{"misspelt nested field", "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: a\nspec:\n  paralelism: 2\n"},
		{"duplicate field", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  name: b\n"},
		{"unknown kind", "apiVersion: v1\nkind: Bogus\nmetadata:\n  name: a\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := kube.Decode([]byte(tc.doc)); err == nil {
				t.Error("Decode accepted it")
			}
		})
	}
}

// TestRestrictedRendersNoRoot: --restricted pods ask for a non-root user and add no
// capability, in both the coordinator Job and the worker template; the default ones are root.
func TestRestrictedRendersNoRoot(t *testing.T) {
	for _, restricted := range []bool{false, true} {
		p := kube.DefaultParams()
		p.Restricted = restricted
		m := renderParsed(t, p)
		psc := m.Coordinator.Spec.Template.Spec.SecurityContext
		nonRoot := psc.RunAsNonRoot != nil && *psc.RunAsNonRoot && psc.RunAsUser == nil
		if nonRoot != restricted {
			t.Errorf("restricted=%v: Pod securityContext %+v", restricted, psc)
		}
		for who, c := range map[string]corev1.Container{"coordinator": m.Coordinator.Spec.Template.Spec.Containers[0], "worker": m.WorkerJob.Spec.Template.Spec.Containers[0]} {
			sc := c.SecurityContext
			if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
				t.Errorf("restricted=%v: %s drops not ALL: %+v", restricted, who, sc)
				continue
			}
			if added := len(sc.Capabilities.Add) > 0; added == restricted {
				t.Errorf("restricted=%v: %s adds %v", restricted, who, sc.Capabilities.Add)
			}
		}
	}
}
