package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is krsync's import path.
const module = "github.com/krsync/krsync"

// layers are the krsync packages each product package may depend on, directly or through
// others: the table of docs/design.md ("Layers"). Data flows fpart → coordinator → worker →
// rsyncexec; worker and coordinator share only leaseapi; nothing imports package main (Go
// forbids it) nor the test tooling under internal/testing. A product package missing here
// fails the test: give it a row, here and in the design. coordinator and worker use verify
// (never the reverse): the workers compare in verify leases, the coordinator judges the
// grouping of hard links across them.
var layers = map[string][]string{
	"fpart":       {},
	"confine":     {},
	"rsyncexec":   {"confine"},
	"prune":       {"confine", "fpart"}, // fpart: the walk's -x/-X/-y/-Y, one owner of their meaning
	"pathcheck":   {},
	"leaseapi":    {},
	"verify":      {}, // the independent witness shares no code with the copy path
	"coordinator": {"fpart", "leaseapi", "pathcheck", "verify"},
	"worker":      {"confine", "fpart", "leaseapi", "prune", "rsyncexec", "verify"},
	"kube":        {"confine", "fpart", "leaseapi", "rsyncexec"},
	"local":       {"confine", "coordinator", "fpart", "leaseapi", "pathcheck", "prune", "rsyncexec", "verify", "worker"},
	"migrate":     {"confine", "fpart", "kube", "leaseapi", "rsyncexec"}, // copies through kube's Jobs
	".":           {"confine", "coordinator", "fpart", "kube", "leaseapi", "local", "migrate", "pathcheck", "prune", "rsyncexec", "verify", "worker"},
}

// clientGo are the product packages that may depend on client-go: kube, migrate (the
// workloads of a migration), and main, which wires kube to the coordinator.
var clientGo = []string{"kube", "migrate", "."}

// tooling are the folders of test and benchmark code, whose imports are their own affair
// (no product package may import them: they are in no row of layers).
var tooling = []string{"internal/testing/", "e2e", "bench", "tools/"}

// layerViolations lists the dependencies of pkg (relative to the module, "." for main) that
// the table does not allow.
func layerViolations(pkg string, deps []string) []string {
	var bad []string
	for _, dep := range deps {
		switch {
		case strings.HasPrefix(dep, "k8s.io/client-go/") && !slices.Contains(clientGo, pkg):
			bad = append(bad, dep+" (only "+strings.Join(clientGo, ", ")+" may use client-go)")
		case dep == module || strings.HasPrefix(dep, module+"/"):
			rel := strings.TrimPrefix(strings.TrimPrefix(dep, module), "/")
			if rel == "" {
				rel = "."
			}
			if !slices.Contains(layers[pkg], rel) {
				bad = append(bad, rel)
			}
		}
	}
	return bad
}

func TestLayerRules(t *testing.T) {
	k := func(p string) string { return module + "/" + p }
	tests := []struct {
		name string
		pkg  string
		deps []string
		want []string
	}{
		{"kube as designed", "kube", []string{k("leaseapi"), "k8s.io/client-go/kubernetes"}, nil},
		{"main wires everything", ".", []string{k("local"), k("kube"), "k8s.io/client-go/rest"}, nil},
		// Deliberately wrong imports: each must be caught.
		{"worker imports coordinator", "worker", []string{k("leaseapi"), k("coordinator")}, []string{"coordinator"}},
		{"coordinator imports worker", "coordinator", []string{k("worker")}, []string{"worker"}},
		{"fpart imports leaseapi", "fpart", []string{k("leaseapi")}, []string{"leaseapi"}},
		{"rsyncexec imports leaseapi", "rsyncexec", []string{k("leaseapi")}, []string{"leaseapi"}},
		{"coordinator imports client-go", "coordinator", []string{"k8s.io/client-go/kubernetes"},
			[]string{"k8s.io/client-go/kubernetes (only kube, migrate, . may use client-go)"}},
		{"local imports test tooling", "local", []string{k("internal/testing/treegen")}, []string{"internal/testing/treegen"}},
		{"local imports kube", "local", []string{k("kube")}, []string{"kube"}},
		{"a package without a row", "newpkg", []string{k("fpart")}, []string{"fpart"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := layerViolations(tt.pkg, tt.deps); !slices.Equal(got, tt.want) {
				t.Errorf("layerViolations(%s, %q) = %q, want %q", tt.pkg, tt.deps, got, tt.want)
			}
		})
	}
}

// TestLayering checks every package of the module, with its transitive dependencies as
// `go list -deps` sees them, against the table.
func TestLayering(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the packages: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-e", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		if pkg == "" {
			pkg = "."
		}
		if slices.ContainsFunc(tooling, func(prefix string) bool {
			return pkg == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(pkg, prefix) || strings.HasPrefix(pkg, prefix+"/")
		}) {
			continue
		}
		if _, ok := layers[pkg]; !ok {
			t.Errorf("package %s has no row in the layering table (layering_test.go and docs/design.md): add one", pkg)
			continue
		}
		if bad := layerViolations(pkg, fields[1:]); len(bad) > 0 {
			t.Errorf("package %s depends on %s, which docs/design.md's layers do not allow", pkg, strings.Join(bad, ", "))
		}
	}
}
