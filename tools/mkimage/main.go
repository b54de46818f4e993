// Command mkimage builds krsync's runtime image without a container engine, as one OCI archive
// file (`make image`): a Debian root file system made by mmdebstrap with rsync and CA
// certificates, the static krsync binary as a second layer, and the config (entrypoint, non-root
// user, OCI labels). `docker load`, `podman load`, `ctr images import` and
// `skopeo copy oci-archive:FILE ...` read the archive (see archive.go).
//
// It is build tooling, a program of its own under tools/, never linked into krsync: the
// product binary does not carry go-containerregistry. The same inputs (binary, version,
// SOURCE_DATE_EPOCH, the Debian packages the mirror serves, the Go release) give the same
// image digest; a mirror that publishes a new package version gives another.
//
// It does not build krsync (make image does, with make build's flags), push to a registry
// (skopeo or crane do), or build images for another architecture than its binary's.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are mkimage's flags.
type options struct {
	Binary   string
	Version  string
	Revision string
	Out      string
	Epoch    int64
	Rootfs   string // a root file system tar made earlier by mkimage's mmdebstrap command; empty: run it
	// RootfsDir, when set, asks for the root file system unpacked in a directory under it (for the
	// test kubelet, see Unpacked) instead of the archive.
	RootfsDir string
	// FromArchive, with RootfsDir, unpacks this archive's image instead of building a root
	// file system.
	FromArchive string
	Mirrors     mirrors
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if opts.RootfsDir != "" {
		unpack := func() (string, error) {
			return unpackRootfs(ctx, defaultSpec, opts.Mirrors, opts.Epoch, opts.RootfsDir)
		}
		if opts.FromArchive != "" {
			unpack = func() (string, error) { return unpackArchive(ctx, defaultSpec, opts.FromArchive, opts.RootfsDir) }
		}
		manifest, err := unpack()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, manifest)
		return nil
	}
	res, err := build(ctx, defaultSpec, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n  image %s:%s\n  manifest digest %s\n  archive sha256:%s, %d bytes\n",
		opts.Out, defaultSpec.Repository, opts.Version, res.Digest, res.ArchiveSHA256, res.ArchiveSize)
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.Binary, "binary", "bin/krsync", "the static krsync binary (make build)")
	fs.StringVar(&o.Version, "version", "dev", "krsync's version: the image tag and org.opencontainers.image.version")
	fs.StringVar(&o.Revision, "revision", "", "the git commit, org.opencontainers.image.revision")
	fs.StringVar(&o.Out, "out", "bin/krsync-image.oci.tar", "the archive to write")
	fs.StringVar(&o.Rootfs, "rootfs", "", "use this root file system tar instead of running mmdebstrap")
	fs.StringVar(&o.RootfsDir, "rootfs-dir", "", "instead of the archive: unpack the image's root file system under this directory (once: it is reused), print the path of its image.json")
	fs.StringVar(&o.FromArchive, "from-archive", "", "with -rootfs-dir: unpack this archive's image (all its layers, its config) instead of building a root file system")
	fs.StringVar(&o.Mirrors.Debian, "mirror", "http://deb.debian.org/debian", "Debian archive")
	fs.StringVar(&o.Mirrors.Security, "security-mirror", "http://deb.debian.org/debian-security", "Debian security archive")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "the build's time in seconds since 1970: every timestamp of the image (default $SOURCE_DATE_EPOCH)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.FromArchive != "" && o.RootfsDir == "" {
		return o, errors.New("-from-archive goes with -rootfs-dir")
	}
	if *epoch == "" && o.RootfsDir != "" {
		*epoch = "0" // a cache for tests: no timestamp to reproduce
	}
	if *epoch == "" {
		return o, errors.New("no build time: set -source-date-epoch or SOURCE_DATE_EPOCH (e.g. $(git log -1 --format=%ct))")
	}
	e, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil || e < 0 {
		return o, fmt.Errorf("-source-date-epoch %q: want seconds since 1970", *epoch)
	}
	o.Epoch = e
	if !validTag(o.Version) {
		return o, fmt.Errorf("-version %q is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})", o.Version)
	}
	return o, nil
}

// validTag is the distribution spec's tag grammar.
func validTag(tag string) bool {
	if tag == "" || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' {
		return false
	}
	for _, r := range tag {
		if !(r == '_' || r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// buildResult names what build wrote.
type buildResult struct {
	Digest        string // the image manifest's digest, as a registry shows it after a copy
	ArchiveSHA256 string
	ArchiveSize   int64
}

// build makes the root file system (unless opts.Rootfs), the image and the archive.
func build(ctx context.Context, spec imageSpec, opts options) (buildResult, error) {
	binary, err := os.ReadFile(opts.Binary)
	if err != nil {
		return buildResult{}, fmt.Errorf("the krsync binary (make build): %w", err)
	}
	arch, err := elfArch(opts.Binary)
	if err != nil {
		return buildResult{}, err
	}
	work, err := os.MkdirTemp(filepath.Dir(opts.Out), ".mkimage-")
	if err != nil {
		return buildResult{}, err
	}
	defer os.RemoveAll(work)

	created := time.Unix(opts.Epoch, 0).UTC()
	rootfs := opts.Rootfs
	if rootfs == "" {
		rootfs = filepath.Join(work, "rootfs.tar")
		if err := buildRootfs(ctx, spec, opts.Mirrors, arch, opts.Epoch, rootfs); err != nil {
			return buildResult{}, err
		}
	}
	rootfsGz := filepath.Join(work, "rootfs.tar.gz")
	if err := gzipFile(rootfs, rootfsGz); err != nil {
		return buildResult{}, err
	}
	img, err := buildImage(imageInputs{
		Spec: spec, RootfsGz: rootfsGz, Binary: binary, Version: opts.Version, Revision: opts.Revision,
		Arch: arch, Created: created,
		RootfsCmd: "mmdebstrap --variant=essential --include=" + strings.Join(spec.Packages, ",") + " " + spec.Suite,
	})
	if err != nil {
		return buildResult{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return buildResult{}, err
	}

	tmp := filepath.Join(work, "archive.tar")
	f, err := os.Create(tmp)
	if err != nil {
		return buildResult{}, err
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	err = writeArchive(bw, img, spec.Repository, opts.Version, created)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return buildResult{}, fmt.Errorf("write %s: %w", opts.Out, err)
	}
	st, err := os.Stat(tmp)
	if err != nil {
		return buildResult{}, err
	}
	if err := os.Rename(tmp, opts.Out); err != nil {
		return buildResult{}, err
	}
	return buildResult{Digest: digest.String(), ArchiveSHA256: fmt.Sprintf("%x", sum.Sum(nil)), ArchiveSize: st.Size()}, nil
}

// elfArch is the GOARCH (and Debian architecture: the two agree for these) of a Linux binary.
func elfArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: not a Linux binary: %w", path, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("%s: machine %v: mkimage knows amd64 and arm64", path, f.Machine)
}
