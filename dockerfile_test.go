package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildLine is the krsync build command with its flags, the version value left out.
type buildLine struct {
	cgoDisabled bool
	trimpath    bool
	ldflags     []string // with "-X main.version=" kept, its value dropped
}

func parseBuildLine(t *testing.T, line string) buildLine {
	t.Helper()
	var b buildLine
	b.cgoDisabled = regexp.MustCompile(`(^|\s)CGO_ENABLED=0\s`).MatchString(line)
	b.trimpath = strings.Contains(line, " -trimpath")
	m := regexp.MustCompile(`-ldflags\s+"([^"]*)"`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no -ldflags \"...\" in %q", line)
	}
	versionValue := regexp.MustCompile(`(main\.version=)\S+`)
	b.ldflags = strings.Fields(versionValue.ReplaceAllString(m[1], "${1}"))
	return b
}

// TestDockerfileBuildsLikeMakefile: the image's binary is built with the Makefile's flags.
func TestDockerfileBuildsLikeMakefile(t *testing.T) {
	docker, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var dockerLine string
	for _, l := range strings.Split(string(docker), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			dockerLine = l
		}
	}
	if dockerLine == "" {
		t.Fatal("Dockerfile: no RUN ... go build line")
	}
	ldflags := regexp.MustCompile(`(?m)^LDFLAGS\s*:?=\s*(.*)$`).FindStringSubmatch(string(makefile))
	makeLine := regexp.MustCompile(`(?m)^\t(.*go build .*)$`).FindStringSubmatch(string(makefile))
	if ldflags == nil || makeLine == nil {
		t.Fatal("Makefile: no LDFLAGS or no go build recipe")
	}
	expanded := strings.ReplaceAll(makeLine[1], "$(LDFLAGS)", strings.TrimSpace(ldflags[1]))
	got, want := parseBuildLine(t, dockerLine), parseBuildLine(t, expanded)
	if !got.cgoDisabled || !got.trimpath {
		t.Errorf("Dockerfile build is not CGO_ENABLED=0 with -trimpath: %q", dockerLine)
	}
	if got.cgoDisabled != want.cgoDisabled || got.trimpath != want.trimpath || strings.Join(got.ldflags, " ") != strings.Join(want.ldflags, " ") {
		t.Errorf("Dockerfile builds with %+v, Makefile with %+v", got, want)
	}
	for _, must := range []string{`ENTRYPOINT ["krsync"]`, "USER ${UID}", "ARG UID=", "rsync"} {
		if !strings.Contains(string(docker), must) {
			t.Errorf("Dockerfile lacks %q", must)
		}
	}
}

// TestStaticBinary builds krsync as the Dockerfile does and checks it has no ELF interpreter
// (PT_INTERP), i.e. it runs on an image without libc; ldd agrees when it is installed.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a full build of krsync")
	}
	bin := filepath.Join(t.TempDir(), "krsync")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the CGO_ENABLED=0 binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if ldd, err := exec.LookPath("ldd"); err == nil {
		out, _ := exec.Command(ldd, bin).CombinedOutput()
		if !strings.Contains(string(out), "not a dynamic executable") && !strings.Contains(string(out), "statically linked") {
			t.Errorf("ldd %s: %s", bin, out)
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "krsync test" {
		t.Errorf("krsync version: %q, %v; want the stamped version", out, err)
	}
}
