package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// Enter turns the calling process, which must be alone in a new mount namespace and run as
// root on one locked OS thread, into the container: root file system, mounts, identity, then
// exec. It returns only on failure, before the command ran.
func Enter(spec Spec) error {
	if len(spec.Args) == 0 {
		return errors.New("no command")
	}
	lastCap, err := lastCapability() // the host's /proc, before it is out of reach
	if err != nil {
		return err
	}
	syscall.Umask(0o022) // a runtime's umask, whatever the kubelet's
	root, err := assembleRoot(spec)
	if err != nil {
		return err
	}
	if err := pivotRoot(root); err != nil {
		return err
	}
	if spec.ReadOnlyRoot {
		// Per mount point, as runc does: the volumes, /dev and /proc on it stay writable.
		if err := syscall.Mount("", "/", "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only root: %w", err)
		}
	}
	cwd := spec.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.Chdir(cwd); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	prog, err := lookPath(spec.Args[0], spec.Env)
	if err != nil {
		return err
	}
	if err := setCredentials(spec, lastCap); err != nil {
		return err
	}
	if err := syscall.Exec(prog, spec.Args, spec.Env); err != nil {
		return fmt.Errorf("exec %s: %w", prog, err)
	}
	return nil
}

// assembleRoot builds the container's root under spec.Dir and returns it: an overlay of
// spec.Rootfs under a tmpfs, /proc, a read-only /sys, a minimal /dev, then spec.Mounts.
func assembleRoot(spec Spec) (string, error) {
	// Nothing mounted from here on may reach the host's namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("make mounts private: %w", err)
	}
	scratch, root := filepath.Join(spec.Dir, "scratch"), filepath.Join(spec.Dir, "root")
	for _, d := range []string{scratch, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := syscall.Mount("tmpfs", scratch, "tmpfs", 0, "mode=0755"); err != nil {
		return "", fmt.Errorf("tmpfs for the root's writes: %w", err)
	}
	upper, work := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", spec.Rootfs, upper, work)
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("overlay on %s: %w", spec.Rootfs, err)
	}
	const hardened = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC
	kernelFS := []struct {
		target, fstype string
		flags          uintptr
		data           string
	}{
		{"/proc", "proc", hardened, ""},
		{"/sys", "sysfs", hardened | syscall.MS_RDONLY, ""},
		{"/dev", "tmpfs", syscall.MS_NOSUID | syscall.MS_STRICTATIME, "mode=0755,size=65536k"},
		{"/dev/shm", "tmpfs", hardened, "mode=1777,size=65536k"},
	}
	for _, m := range kernelFS {
		target, err := mountPoint(root, m.target, true)
		if err != nil {
			return "", err
		}
		if err := syscall.Mount(m.fstype, target, m.fstype, m.flags, m.data); err != nil {
			return "", fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	if err := populateDev(root); err != nil {
		return "", err
	}
	for _, m := range spec.Mounts {
		if err := bindMount(root, m); err != nil {
			return "", err
		}
	}
	return root, nil
}

// populateDev gives /dev what a runtime does: the harmless devices (bind-mounted from the host
// like rootless runtimes do, rather than made with mknod) and the fd links.
func populateDev(root string) error {
	for _, dev := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bindMount(root, Mount{Source: "/dev/" + dev, Target: "/dev/" + dev}); err != nil {
			return err
		}
	}
	links := map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, "dev", name)); err != nil {
			return err
		}
	}
	return nil
}

// bindMount mounts m.Source at m.Target inside root, read-only when asked.
func bindMount(root string, m Mount) error {
	st, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.Target, err)
	}
	target, err := mountPoint(root, m.Target, st.IsDir())
	if err != nil {
		return err
	}
	if err := syscall.Mount(m.Source, target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", m.Source, m.Target, err)
	}
	if m.ReadOnly {
		if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only %s: %w", m.Target, err)
		}
	}
	return nil
}

// mountPoint resolves a container path inside root (symlinks followed as the container would
// see them, never out of root: the image's /var/run is a link to /run) and creates it, a
// directory or an empty file, when it is missing. The creations land in the overlay's tmpfs.
func mountPoint(root, containerPath string, dir bool) (string, error) {
	p, err := resolveIn(root, containerPath)
	if err != nil {
		return "", fmt.Errorf("mount point %s: %w", containerPath, err)
	}
	if dir {
		return p, os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return "", err
	}
	return p, f.Close()
}

// maxSymlinks is Linux's limit on symlinks followed in one lookup (MAXSYMLINKS).
const maxSymlinks = 40

// resolveIn is filepath.Join(root, p) with every symlink on the way followed inside root, as
// if root were "/": what runc's securejoin does for mount targets.
func resolveIn(root, p string) (string, error) {
	parts := strings.Split(p, "/")
	cur := "/"
	links := 0
	for len(parts) > 0 {
		part := parts[0]
		parts = parts[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		if errors.Is(err, fs.ErrNotExist) {
			cur = next // created later; nothing below it can be a link
			continue
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", errors.New("too many levels of symbolic links")
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return filepath.Join(root, cur), nil
}

// pivotRoot makes root the process's "/" and drops the old root, as runc does (pivot_root(2)
// with the same directory twice, then a lazy unmount of what is stacked below).
func pivotRoot(root string) error {
	if err := os.Chdir(root); err != nil {
		return err
	}
	if err := syscall.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := syscall.Unmount(".", syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return os.Chdir("/")
}

// lookPath finds a command through the PATH of env, inside the new root.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range filepath.SplitList(pathVar) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}
