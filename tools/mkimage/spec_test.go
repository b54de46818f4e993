package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dockerfile is the final stage of the Dockerfile, its ARG defaults substituted.
type dockerfile struct {
	from        string   // the image the final stage starts from
	packages    []string // apt-get install's packages
	groupadd    []string // the groupadd command's words
	useradd     []string // the useradd command's words
	copyDest    string   // where COPY --from=build puts the binary
	user        string   // USER
	entrypoint  []string // ENTRYPOINT, exec form
	entrypoints int      // how many ENTRYPOINT instructions the final stage has
}

// parseDockerfile reads the instructions the image is made of. It knows the few forms our
// Dockerfile uses, and fails on what it cannot read rather than guessing.
func parseDockerfile(t *testing.T, text string) dockerfile {
	t.Helper()
	args := map[string]string{}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			v, ok := args[k]
			if !ok {
				t.Fatalf("Dockerfile: ${%s} has no ARG default", k)
			}
			return v
		})
	}
	var d dockerfile
	joined := strings.ReplaceAll(text, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "ARG":
			k, v, _ := strings.Cut(rest, "=")
			args[k] = v
		case "FROM":
			// A new stage: what the final image holds is what the last FROM starts.
			d = dockerfile{from: expand(strings.Fields(rest)[0])}
		case "RUN":
			for _, cmd := range strings.Split(rest, "&&") {
				words := strings.Fields(expand(strings.ReplaceAll(cmd, `"`, "")))
				switch {
				case len(words) > 2 && words[0] == "apt-get" && words[1] == "install":
					for _, w := range words[2:] {
						if !strings.HasPrefix(w, "-") {
							d.packages = append(d.packages, w)
						}
					}
				case len(words) > 0 && words[0] == "groupadd":
					d.groupadd = words
				case len(words) > 0 && words[0] == "useradd":
					d.useradd = words
				}
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) >= 3 && strings.HasPrefix(f[0], "--from=") {
				d.copyDest = expand(f[len(f)-1])
			}
		case "USER":
			d.user = expand(rest)
		case "ENTRYPOINT":
			d.entrypoints++
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("Dockerfile: ENTRYPOINT %s is not the exec form: %v", rest, err)
			}
		}
	}
	return d
}

// option returns the value after flag in words, or "" when flag is absent.
func option(words []string, flag string) string {
	if i := slices.Index(words, flag); i >= 0 && i+1 < len(words) {
		return words[i+1]
	}
	return ""
}

// TestDockerfileDescribesTheSameImage: `docker build` and `make image` give an image with the
// same Debian release, packages, user, binary path and entrypoint. The PATH is the debian
// images' own, which the Dockerfile inherits: the spec must make the entrypoint resolve to the
// binary through it.
func TestDockerfileDescribesTheSameImage(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := parseDockerfile(t, string(text))
	s := defaultSpec

	if want := "debian:" + s.Suite + "-slim"; d.from != want {
		t.Errorf("Dockerfile's final stage is FROM %q; mkimage builds Debian %s: want FROM %q", d.from, s.Suite, want)
	}
	if got, want := slices.Sorted(slices.Values(d.packages)), slices.Sorted(slices.Values(s.Packages)); !slices.Equal(got, want) {
		t.Errorf("packages: Dockerfile installs %q, mkimage %q", got, want)
	}
	if d.groupadd == nil || d.useradd == nil {
		t.Fatalf("Dockerfile: no groupadd or useradd in a RUN of the final stage")
	}
	checks := []struct{ what, dockerfile, mkimage string }{
		{"group name", d.groupadd[len(d.groupadd)-1], s.UserName},
		{"group GID", option(d.groupadd, "--gid"), strconv.Itoa(s.GID)},
		{"user name", d.useradd[len(d.useradd)-1], s.UserName},
		{"user UID", option(d.useradd, "--uid"), strconv.Itoa(s.UID)},
		{"user GID", option(d.useradd, "--gid"), strconv.Itoa(s.GID)},
		{"home", option(d.useradd, "--home-dir"), s.Home},
		{"shell", option(d.useradd, "--shell"), s.Shell},
		{"binary path", d.copyDest, s.BinaryPath},
		{"USER", d.user, s.User()},
	}
	for _, c := range checks {
		if c.dockerfile != c.mkimage {
			t.Errorf("%s: Dockerfile %q, mkimage %q", c.what, c.dockerfile, c.mkimage)
		}
	}
	if !slices.Contains(d.useradd, "--no-create-home") {
		t.Errorf("Dockerfile's useradd creates a home; mkimage's user has none (%s)", s.Home)
	}
	if d.entrypoints != 1 || !slices.Equal(d.entrypoint, s.Entrypoint) {
		t.Errorf("ENTRYPOINT: Dockerfile %q (%d instructions), mkimage %q", d.entrypoint, d.entrypoints, s.Entrypoint)
	}
	if !s.binaryInPath() {
		t.Errorf("mkimage's entrypoint %q does not resolve to %s through PATH=%s", s.Entrypoint, s.BinaryPath, s.Path)
	}
	if !regexp.MustCompile(`^[0-9]+:[0-9]+$`).MatchString(s.User()) {
		t.Errorf("User %q is not numeric: runAsNonRoot cannot check it", s.User())
	}
}

// TestParseDockerfile pins the parser on a Dockerfile that differs from ours in each field.
func TestParseDockerfile(t *testing.T) {
	d := parseDockerfile(t, `ARG R=bookworm
FROM golang:1 AS build
USER nobody
FROM debian:${R}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsync \
    openssh-client
ARG UID=1000
RUN groupadd --gid 7 g && useradd --uid "${UID}" --gid 7 --home-dir /h --shell /bin/sh u
COPY --from=build /out/krsync /bin/krsync
USER ${UID}:7
ENTRYPOINT ["/bin/krsync", "worker"]
`)
	want := dockerfile{
		from: "debian:bookworm-slim", packages: []string{"rsync", "openssh-client"},
		groupadd: []string{"groupadd", "--gid", "7", "g"},
		useradd:  []string{"useradd", "--uid", "1000", "--gid", "7", "--home-dir", "/h", "--shell", "/bin/sh", "u"},
		copyDest: "/bin/krsync", user: "1000:7",
		entrypoint: []string{"/bin/krsync", "worker"}, entrypoints: 1,
	}
	if d.from != want.from || !slices.Equal(d.packages, want.packages) || !slices.Equal(d.groupadd, want.groupadd) ||
		!slices.Equal(d.useradd, want.useradd) || d.copyDest != want.copyDest || d.user != want.user ||
		!slices.Equal(d.entrypoint, want.entrypoint) || d.entrypoints != want.entrypoints {
		t.Errorf("parsed\n%+v\nwant\n%+v", d, want)
	}
}
