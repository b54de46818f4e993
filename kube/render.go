package kube

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/rsyncexec"
)

//go:embed templates/*.yaml templates/Kustomization
var templateFS embed.FS

// PublishedToken is the lease API token in the repository's manifests/. It is public, so a
// coordinator that runs with it warns loudly; `krsync manifests` writes a random one instead.
const PublishedToken = "published-default-token-replace-me"

// Kustomization is the name of the kustomize file among the rendered files; it is not a
// Kubernetes object. It is one of the names kustomize looks for, and the one without a .yaml
// extension: `kubectl apply -f manifests` reads every .yaml file of the directory and would
// fail on a kustomization.yaml ("no matches for kind Kustomization"); with this name both
// `kubectl apply -f manifests` and `kubectl apply -k manifests` work.
const Kustomization = "Kustomization"

// Params customise the manifests. DefaultParams gives the values of the repository's manifests/.
type Params struct {
	// Name is the run's name (krsync manifests --name): every object is named after it
	// (RunNames) and labelled app.kubernetes.io/instance=Name, so that several runs can share
	// a namespace. Empty means DefaultRunName.
	Name        string
	Namespace   string // empty: no namespace in the objects (kubectl's current namespace)
	SourcePVC   string
	DestPVC     string
	Parallelism int
	Image       string
	PullPolicy  string
	FpartOpts   string
	RsyncOpts   string
	Token       string

	// SourceSubPath and DestSubPath mount a directory of the claims instead of their roots
	// (the volumeMounts' subPath, the workers' the same as the coordinator's); empty: the root.
	SourceSubPath, DestSubPath string
	// Restricted renders pods that Pod Security Admission's "restricted" level admits: the
	// image's non-root user, no added capabilities (owners are not kept; files that user
	// cannot read are not copied). false: root with the capabilities a faithful copy needs,
	// which the "baseline" level admits.
	Restricted bool
	// Mirror, DryRun, Verify and VerifyChecksum are the coordinator's --mirror, --dry-run,
	// --verify and --verify-checksum (KRSYNC_MIRROR...); all false by default.
	Mirror, DryRun, Verify, VerifyChecksum bool
	// RequireEmptyDest is the coordinator's --require-empty-dest (KRSYNC_REQUIRE_EMPTY_DEST,
	// rendered only when true): refuse a destination holding data (DestNotEmpty).
	RequireEmptyDest bool
}

// DestNotEmpty is how the coordinator's --require-empty-dest refusal describes the
// destination, so that a caller reading the outcome (krsync migrate) knows the copy never began.
const DestNotEmpty = "holds data this run did not write"

// DefaultParams are the defaults of the repository's manifests/, equal to the seed Helm chart's
// where they still apply (source-pvc, dest-pvc, parallelism 2, its fpart options).
func DefaultParams() Params {
	return Params{
		Name:        DefaultRunName,
		SourcePVC:   "source-pvc",
		DestPVC:     "dest-pvc",
		Parallelism: 2,
		Image:       "ghcr.io/krsync/krsync:latest",
		PullPolicy:  "IfNotPresent",
		FpartOpts:   fpart.DefaultOptions,
		RsyncOpts:   rsyncexec.DefaultOptions,
		Token:       PublishedToken,
	}
}

// File is one rendered manifest file.
type File struct {
	Name string
	Data []byte
}

// RunName is p.Name, or DefaultRunName when it is empty.
func (p Params) RunName() string {
	if p.Name == "" {
		return DefaultRunName
	}
	return p.Name
}

// Validate checks that p renders into valid objects.
func (p Params) Validate() error {
	if err := ValidateRunName(p.RunName()); err != nil {
		return err
	}
	for _, c := range []struct{ flag, value string }{{"--source-pvc", p.SourcePVC}, {"--dest-pvc", p.DestPVC}} {
		if errs := validation.IsDNS1123Subdomain(c.value); len(errs) > 0 {
			return fmt.Errorf("%s %q: not a valid claim name: %s", c.flag, c.value, strings.Join(errs, "; "))
		}
	}
	for _, c := range []struct{ flag, value string }{{"--source-subpath", p.SourceSubPath}, {"--dest-subpath", p.DestSubPath}} {
		if err := validateSubPath(c.value); err != nil {
			return fmt.Errorf("%s %q: %w", c.flag, c.value, err)
		}
	}
	if p.SourcePVC == p.DestPVC {
		// One claim on both sides: the copy must go from one directory of it into another,
		// neither inside the other (it would copy itself, or write over, and with --mirror
		// delete, its own source).
		src, dst := path.Clean("/"+p.SourceSubPath), path.Clean("/"+p.DestSubPath)
		if src == dst || strings.HasPrefix(dst, strings.TrimSuffix(src, "/")+"/") || strings.HasPrefix(src, strings.TrimSuffix(dst, "/")+"/") {
			return fmt.Errorf("--source-pvc and --dest-pvc are both %q and --source-subpath %q and --dest-subpath %q overlap: copy into another claim, or between two directories of it neither inside the other", p.SourcePVC, p.SourceSubPath, p.DestSubPath)
		}
	}
	if p.Namespace != "" {
		if errs := validation.IsDNS1123Label(p.Namespace); len(errs) > 0 {
			return fmt.Errorf("--namespace %q: not a valid namespace: %s", p.Namespace, strings.Join(errs, "; "))
		}
	}
	if p.Parallelism < 1 {
		return fmt.Errorf("--parallelism %d: want at least 1", p.Parallelism)
	}
	if p.Image == "" || strings.ContainsAny(p.Image, " \t\r\n\"'#") {
		return fmt.Errorf("--image %q: want an image reference like registry.example.com/krsync:v1", p.Image)
	}
	switch p.PullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		return fmt.Errorf("--pull-policy %q: want Always, IfNotPresent or Never", p.PullPolicy)
	}
	if p.DryRun && !p.Mirror {
		return fmt.Errorf("--dry-run lists what --mirror would delete: give --mirror too")
	}
	if strings.TrimSpace(p.Token) == "" {
		return fmt.Errorf("the lease API token is empty")
	}
	return nil
}

// renderData is what the templates see: p, with the run's name and object names.
type renderData struct {
	Params
	Name  string
	Names RunNames
}

// validateSubPath refuses what the API server refuses in a volumeMount's subPath (an absolute
// path, a ".." element) and what would mount the claim's root anyway, or another path than
// the one written ("a//b", "a/./b", a trailing slash): the path must be written clean.
func validateSubPath(sub string) error {
	switch {
	case sub == "":
		return nil
	case path.IsAbs(sub):
		return fmt.Errorf("want a path relative to the claim's root, not an absolute one")
	case slices.Contains(strings.Split(sub, "/"), ".."):
		return fmt.Errorf("must not contain \"..\"")
	case strings.ContainsAny(sub, "\x00\n\r"), path.Clean(sub) != sub, sub == ".":
		return fmt.Errorf("want a clean relative path like data/2024 (no \".\" elements, doubled or trailing slashes)")
	}
	return nil
}

// Render returns the manifest files for p, in apply order, the kustomization last.
func Render(p Params) ([]File, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	tmpl := template.New("manifests").Option("missingkey=error").Funcs(template.FuncMap{
		"quote": func(v any) (string, error) {
			s := fmt.Sprint(v)
			b, err := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
			return string(b), err
		},
	})
	tmpl, err := tmpl.Parse(`{{ define "meta" }}{{ if .Namespace }}
  namespace: {{ .Namespace }}{{ end }}{{ end }}`)
	if err != nil {
		return nil, fmt.Errorf("manifest templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("manifest templates: %w", err)
	}
	sort.Strings(names)
	names = append(names, "templates/"+Kustomization)
	var files, last []File
	for _, name := range names {
		src, err := templateFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("manifest template %s: %w", name, err)
		}
		t, err := tmpl.Clone()
		if err == nil {
			t, err = t.Parse(string(src))
		}
		if err != nil {
			return nil, fmt.Errorf("manifest template %s: %w", name, err)
		}
		var out bytes.Buffer
		if err := t.Execute(&out, renderData{Params: p, Name: p.RunName(), Names: NamesFor(p.RunName())}); err != nil {
			return nil, fmt.Errorf("manifest template %s: %w", name, err)
		}
		f := File{Name: path.Base(name), Data: out.Bytes()}
		if f.Name == Kustomization {
			last = append(last, f)
			continue
		}
		files = append(files, f)
	}
	return append(files, last...), nil
}

// Stream joins the files (the kustomization left out) into one multi-document YAML stream,
// for `kubectl apply -f -`.
func Stream(files []File) []byte {
	var b bytes.Buffer
	for _, f := range files {
		if f.Name == Kustomization {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("---\n")
		}
		b.Write(f.Data)
	}
	return b.Bytes()
}
