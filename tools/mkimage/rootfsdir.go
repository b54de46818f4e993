package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
)

// Unpacked is what -rootfs-dir writes next to the root file system, in image.json: the parts
// of the image config a runtime needs to start a container from the directory, and where the
// binary layer puts krsync (a test runtime mounts the krsync under test there).
type Unpacked struct {
	Rootfs     string   // the root file system, owners and modes as in the image's first layer
	Entrypoint []string // the config's Entrypoint
	User       string   // the config's User (UID:GID)
	Env        []string // the config's Env
	BinaryPath string   // the binary layer's one file, absent from Rootfs
}

// unpackedKey names a root file system by everything that goes into it, so a change of the
// spec or the mirrors makes a new one; the packages a mirror serves today are not part of it
// (the directory is a cache, the archive is what gets shipped).
func unpackedKey(spec imageSpec, m mirrors, arch string) (string, error) {
	b, err := json.Marshal(struct {
		Spec    imageSpec
		Mirrors mirrors
		Arch    string
	}{spec, m, arch})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-%s-%x", spec.Suite, arch, sha256.Sum256(b))[:len(spec.Suite)+len(arch)+2+16], nil
}

// unpackRootfs makes (once) cache/KEY/rootfs, the image's root file system as a directory,
// from the same mmdebstrap command as the image's first layer, and cache/KEY/image.json; it
// returns the path of image.json. Concurrent callers wait for one build (a lock file); a
// half-made directory is never used (it is renamed into place when complete). Needs root:
// the files keep their owners.
func unpackRootfs(ctx context.Context, spec imageSpec, m mirrors, epoch int64, cache string) (string, error) {
	arch := runtime.GOARCH
	key, err := unpackedKey(spec, m, arch)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, key)
	manifest := filepath.Join(dir, "image.json")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(cache, key+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if _, err := os.Stat(manifest); err == nil {
		return manifest, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("-rootfs-dir needs root: the root file system's files keep their owners")
	}
	tarProg, err := exec.LookPath("tar")
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(cache, ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	tarball := filepath.Join(work, "rootfs.tar")
	if err := buildRootfs(ctx, spec, m, arch, epoch, tarball); err != nil {
		return "", err
	}
	root := filepath.Join(work, "image", "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	// GNU tar as root keeps owners, modes, times and hard links; --numeric-owner because the
	// host's user names are not the image's.
	if out, err := exec.CommandContext(ctx, tarProg, "--numeric-owner", "--same-permissions", "-xf", tarball, "-C", root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("unpack the root file system: %w: %s", err, out)
	}
	b, err := json.MarshalIndent(Unpacked{
		Rootfs: filepath.Join(dir, "rootfs"), Entrypoint: spec.Entrypoint, User: spec.User(),
		Env: spec.Env(), BinaryPath: spec.BinaryPath,
	}, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(work, "image", "image.json"), append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil { // a build interrupted before image.json
		return "", err
	}
	if err := os.Rename(filepath.Join(work, "image"), dir); err != nil {
		return "", err
	}
	return manifest, nil
}
