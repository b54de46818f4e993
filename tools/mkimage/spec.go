package main

import (
	"fmt"
	"path"
	"strings"
)

// imageSpec is what the runtime image holds and how it starts. The Dockerfile describes the
// same image for people with Docker; spec_test.go reads the Dockerfile and fails when the two
// drift apart.
type imageSpec struct {
	Suite      string   // Debian release of the root file system (the Dockerfile's DEBIAN_RELEASE)
	Packages   []string // installed on top of Debian's essential packages (the Dockerfile's apt-get install)
	UserName   string   // the non-root user, in /etc/passwd and /etc/group
	UID, GID   int      // the image's default user, numeric so that runAsNonRoot can check it
	Home       string   // the user's home directory, which does not exist
	Shell      string   // the user's login shell (krsync never logs in)
	BinaryPath string   // where the static krsync binary lives
	Entrypoint []string // resolved through Path, like the Dockerfile's ENTRYPOINT
	Path       string   // PATH of the image (the debian images' own, which the Dockerfile inherits)
	Source     string   // org.opencontainers.image.source
	Repository string   // the image's name without a tag, in index.json and manifest.json
}

// defaultSpec is the image `make image` builds.
var defaultSpec = imageSpec{
	Suite:      "trixie",
	Packages:   []string{"rsync", "ca-certificates"},
	UserName:   "krsync",
	UID:        65532,
	GID:        65532,
	Home:       "/nonexistent",
	Shell:      "/usr/sbin/nologin",
	BinaryPath: "/usr/local/bin/krsync",
	Entrypoint: []string{"krsync"},
	Path:       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	Source:     "https://github.com/krsync/krsync",
	Repository: "ghcr.io/krsync/krsync",
}

// User is the image config's User: numeric UID:GID.
func (s imageSpec) User() string { return fmt.Sprintf("%d:%d", s.UID, s.GID) }

// Env is the image config's Env.
func (s imageSpec) Env() []string { return []string{"PATH=" + s.Path} }

// passwdLine and groupLine are the entries useradd and groupadd write in the Dockerfile.
func (s imageSpec) passwdLine() string {
	return fmt.Sprintf("%s:x:%d:%d::%s:%s", s.UserName, s.UID, s.GID, s.Home, s.Shell)
}

func (s imageSpec) groupLine() string { return fmt.Sprintf("%s:x:%d:", s.UserName, s.GID) }

// binaryInPath reports whether the entrypoint's command resolves to BinaryPath through Path.
func (s imageSpec) binaryInPath() bool {
	if len(s.Entrypoint) == 0 {
		return false
	}
	if path.IsAbs(s.Entrypoint[0]) {
		return s.Entrypoint[0] == s.BinaryPath
	}
	if path.Base(s.BinaryPath) != s.Entrypoint[0] {
		return false
	}
	for _, dir := range strings.Split(s.Path, ":") {
		if dir == path.Dir(s.BinaryPath) {
			return true
		}
	}
	return false
}
