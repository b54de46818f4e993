package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// mirrors are the Debian archives the root file system comes from: the release, its updates
// and its security fixes, as in the debian images the Dockerfile starts from.
type mirrors struct {
	Debian   string // e.g. http://deb.debian.org/debian
	Security string // e.g. http://deb.debian.org/debian-security
}

// rootfsCommand is the mmdebstrap command line that writes the image's root file system as an
// uncompressed tar to out.
//
// The essential variant holds only Debian's Essential: yes packages (no apt: the image is never
// updated in place) plus spec.Packages and what they depend on. Documentation, manual pages and
// translations are left out as in the debian -slim images, copyright files kept. Device nodes
// are left out (--skip=output/dev): every runtime mounts its own /dev, and rootless podman
// cannot create them on load. The user is written into /etc/passwd and /etc/group directly:
// the passwd package (useradd) is not essential. With SOURCE_DATE_EPOCH set, mmdebstrap's
// output is the same bit for bit for the same packages (mmdebstrap(1), SOURCE_DATE_EPOCH).
func rootfsCommand(ctx context.Context, spec imageSpec, m mirrors, arch string, epoch int64, out string) *exec.Cmd {
	hook := fmt.Sprintf(`echo %s >> "$1/etc/passwd" && echo %s >> "$1/etc/group"`+
		` && if [ -e "$1/etc/shadow" ]; then echo %s >> "$1/etc/shadow"; fi`,
		shellQuote(spec.passwdLine()), shellQuote(spec.groupLine()), shellQuote(spec.UserName+":!:::::::"))
	args := []string{
		"--mode=auto", // root when run as root, unshare otherwise
		"--variant=essential",
		"--architectures=" + arch,
		"--include=" + strings.Join(spec.Packages, ","),
		"--format=tar",
		"--skip=output/dev",
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		"--dpkgopt=path-exclude=/usr/share/info/*",
		"--customize-hook=" + hook,
		spec.Suite, out,
		fmt.Sprintf("deb %s %s main", m.Debian, spec.Suite),
		fmt.Sprintf("deb %s %s-updates main", m.Debian, spec.Suite),
		fmt.Sprintf("deb %s %s-security main", m.Security, spec.Suite),
	}
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	return cmd
}

// buildRootfs runs mmdebstrap; its progress goes to stderr.
func buildRootfs(ctx context.Context, spec imageSpec, m mirrors, arch string, epoch int64, out string) error {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return fmt.Errorf("mmdebstrap not found (run scripts/install-image-deps, or apt-get install mmdebstrap): %w", err)
	}
	cmd := rootfsCommand(ctx, spec, m, arch, epoch, out)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mmdebstrap %s: %w", spec.Suite, err)
	}
	return nil
}

// shellQuote quotes s for sh(1) in single quotes.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
