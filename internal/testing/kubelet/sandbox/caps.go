package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// capabilityNames are Linux's capabilities by number (linux/capability.h), without "CAP_",
// as Kubernetes spells them.
var capabilityNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// AllCapabilities lists every capability name this package knows (privileged, add: [ALL]).
func AllCapabilities() []string { return append([]string(nil), capabilityNames...) }

// CapabilityNumber returns the number of a capability named with or without "CAP_", in any case.
func CapabilityNumber(name string) (int, bool) {
	name = strings.TrimPrefix(strings.ToUpper(name), "CAP_")
	for i, n := range capabilityNames {
		if n == name {
			return i, true
		}
	}
	return 0, false
}

// CapabilityMask is the bit mask of capability names, as /proc/PID/status prints CapEff.
func CapabilityMask(names []string) (uint64, error) {
	var mask uint64
	for _, n := range names {
		i, ok := CapabilityNumber(n)
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		mask |= 1 << i
	}
	return mask, nil
}

// prctl options and capset's ABI (linux/prctl.h, linux/capability.h).
const (
	prSetKeepCaps        = 8
	prCapBSetDrop        = 24
	prSetNoNewPrivs      = 38
	prCapAmbient         = 47
	prCapAmbientClearAll = 4
	capabilityVersion3   = 0x20080522
)

type capHeader struct {
	version uint32
	pid     int32
}

type capData struct{ effective, permitted, inheritable uint32 }

// setCredentials gives the calling thread, which is about to exec, the container's identity.
// Everything here is per thread in Linux, so it runs on the one locked OS thread that execs
// (cmd/sandbox-init locks it), through raw system calls that touch only that thread; Go's
// syscall.Setuid would change every thread of the runtime.
//
// The sets are containerd's (since 1.6.2, CVE-2022-24769): bounding = permitted = effective =
// the kept capabilities, inheritable and ambient empty. Across exec a root process keeps the
// bounding set as its permitted and effective sets; a non-root process ends with none (no
// ambient capabilities), exactly what Kubernetes gives a non-root container that adds some.
func setCredentials(spec Spec, lastCap int) error {
	mask, err := CapabilityMask(spec.Capabilities)
	if err != nil {
		return err
	}
	for c := 0; c <= lastCap; c++ {
		if mask&(1<<c) != 0 {
			continue
		}
		if err := prctl(prCapBSetDrop, uintptr(c)); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := prctl(prCapAmbient, prCapAmbientClearAll); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// Keep the permitted set across setresuid to a non-root user; capset trims it below.
	if err := prctl(prSetKeepCaps, 1); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	var groups uintptr // setgroups(0, NULL) when there are none
	if len(spec.Groups) > 0 {
		groups = uintptr(unsafe.Pointer(&spec.Groups[0]))
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(spec.Groups)), groups, 0); e != 0 {
		return fmt.Errorf("setgroups %v: %w", spec.Groups, e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(spec.GID), uintptr(spec.GID), uintptr(spec.GID)); e != 0 {
		return fmt.Errorf("setresgid %d: %w", spec.GID, e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(spec.UID), uintptr(spec.UID), uintptr(spec.UID)); e != 0 {
		return fmt.Errorf("setresuid %d: %w", spec.UID, e)
	}
	hdr := capHeader{version: capabilityVersion3}
	data := [2]capData{
		{effective: uint32(mask), permitted: uint32(mask)},
		{effective: uint32(mask >> 32), permitted: uint32(mask >> 32)},
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	if spec.NoNewPrivs {
		if err := prctl(prSetNoNewPrivs, 1); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	return nil
}

func prctl(option, arg uintptr) error {
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, option, arg, 0, 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

// lastCapability is the highest capability number the running kernel knows.
func lastCapability() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
