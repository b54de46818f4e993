package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Unpacked is what -rootfs-dir writes next to the root file system, in image.json: the parts
// of the image config a runtime needs to start a container from the directory, and where the
// binary layer puts krsync (a test runtime mounts the krsync under test there).
type Unpacked struct {
	Rootfs     string   // the root file system, owners and modes as in the image's first layer
	Entrypoint []string // the config's Entrypoint
	Cmd        []string `json:",omitempty"` // the config's Cmd
	User       string   // the config's User (UID:GID)
	Env        []string // the config's Env
	WorkingDir string   `json:",omitempty"` // the config's WorkingDir
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
// returns the path of image.json. Needs root: the files keep their owners.
func unpackRootfs(ctx context.Context, spec imageSpec, m mirrors, epoch int64, cache string) (string, error) {
	arch := runtime.GOARCH
	key, err := unpackedKey(spec, m, arch)
	if err != nil {
		return "", err
	}
	return unpackOnce(cache, key, func(work, root string) (Unpacked, error) {
		tarball := filepath.Join(work, "rootfs.tar")
		if err := buildRootfs(ctx, spec, m, arch, epoch, tarball); err != nil {
			return Unpacked{}, err
		}
		f, err := os.Open(tarball)
		if err != nil {
			return Unpacked{}, err
		}
		defer f.Close()
		return Unpacked{Entrypoint: spec.Entrypoint, User: spec.User(), Env: spec.Env(), BinaryPath: spec.BinaryPath}, untar(ctx, f, root)
	})
}

// unpackArchive makes (once) cache/DIGEST/rootfs from an archive mkimage wrote: the image's
// layers in order, the binary layer included, and image.json from the image's config; so a
// test runs that very image.
func unpackArchive(ctx context.Context, spec imageSpec, archive, cache string) (string, error) {
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return "", fmt.Errorf("%s: %w", archive, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	return unpackOnce(cache, "archive-"+digest.Hex[:16], func(_, root string) (Unpacked, error) {
		cf, err := img.ConfigFile()
		if err != nil {
			return Unpacked{}, err
		}
		layers := mutate.Extract(img) // the layers applied in order, whiteouts honoured
		defer layers.Close()
		c := cf.Config
		return Unpacked{Entrypoint: c.Entrypoint, Cmd: c.Cmd, User: c.User, Env: c.Env, WorkingDir: c.WorkingDir, BinaryPath: spec.BinaryPath},
			untar(ctx, layers, root)
	})
}

// unpackOnce returns cache/key/image.json, first making cache/key with fill when it is
// missing. Concurrent callers wait for one fill (a lock file); a half-made directory is never
// used (it is renamed into place when complete).
func unpackOnce(cache, key string, fill func(work, root string) (Unpacked, error)) (string, error) {
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
	work, err := os.MkdirTemp(cache, ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "image", "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	u, err := fill(work, root)
	if err != nil {
		return "", err
	}
	u.Rootfs = filepath.Join(dir, "rootfs")
	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(work, "image", "image.json"), append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil { // a fill interrupted before image.json
		return "", err
	}
	if err := os.Rename(filepath.Join(work, "image"), dir); err != nil {
		return "", err
	}
	return manifest, nil
}

// untar unpacks a tar stream into root with GNU tar, which as root keeps owners, modes, times
// and hard links; --numeric-owner because the host's user names are not the image's.
func untar(ctx context.Context, r io.Reader, root string) error {
	tarProg, err := exec.LookPath("tar")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, tarProg, "--numeric-owner", "--same-permissions", "-xf", "-", "-C", root)
	cmd.Stdin = r
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack the root file system: %w: %s", err, out)
	}
	return nil
}
