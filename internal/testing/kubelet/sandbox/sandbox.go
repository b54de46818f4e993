// Package sandbox starts one container process the way a container runtime (runc under
// containerd) does, for the test kubelet: in its own mount namespace, on a copy-on-write view of
// an image's root file system with the Pod's volumes bind-mounted at their mount paths, then
// with the container's user, groups, capabilities, no_new_privs and read-only root, and execs
// the container's command in there.
//
// Enter runs in a small program of its own (cmd/sandbox-init) that the kubelet starts in a new
// mount namespace (CLONE_NEWNS) and that becomes the container's process: Go cannot mount and
// drop capabilities between fork and exec, and the namespace must be the whole process's
// before a Go runtime has threads. The kubelet's own process and the host's mounts are never
// touched: every mount is made private first and disappears with the namespace, when the
// container's last process ends.
//
// What it is not: there is no PID, network, UTS, IPC or user namespace (the Pod shares the
// host's network, which the test kubelet's loopback ports rely on), no cgroup, no seccomp
// filter and no AppArmor or SELinux label.
package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
)

// Spec is one container's process, written by the kubelet as JSON for the init program.
type Spec struct {
	// Rootfs is the image's root file system. It is the read-only lower layer of an overlay:
	// what the container writes to its root goes to a tmpfs that vanishes with it, so many
	// containers share one Rootfs and none changes it.
	Rootfs string
	// Dir is an empty host directory of this container, where its root is assembled (in the
	// container's namespace only).
	Dir string
	// Mounts are bind-mounted in order, after /proc, /sys and /dev.
	Mounts []Mount
	// ReadOnlyRoot makes the root mount read-only (readOnlyRootFilesystem); the mounts on it
	// keep their own flags, as in a runtime.
	ReadOnlyRoot bool
	UID, GID     uint32
	// Groups are the supplementary groups: the image's /etc/group memberships, fsGroup and
	// supplementalGroups.
	Groups []uint32
	// Capabilities are the names (CHOWN, ...) of the capabilities the process keeps: its
	// bounding set, and its permitted and effective sets before exec. See setCredentials for
	// what exec leaves of them.
	Capabilities []string
	// NoNewPrivs sets no_new_privs (allowPrivilegeEscalation: false).
	NoNewPrivs bool
	// Args is the command, Args[0] found through Env's PATH inside the root when it has no slash.
	Args []string
	Env  []string
	// Cwd is the working directory inside the root.
	Cwd string
}

// Mount is one bind mount: a host file or directory at a path inside the container.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// WriteSpec writes spec where the init program reads it.
func WriteSpec(path string, spec Spec) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// ReadSpec reads what WriteSpec wrote.
func ReadSpec(path string) (Spec, error) {
	var spec Spec
	b, err := os.ReadFile(path)
	if err != nil {
		return spec, err
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		return spec, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}
