//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || ppc64 || s390x || loong64 || mips64 || mips64le)

package fpart

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// lstatAt is fstatat(fd, name, st, AT_SYMLINK_NOFOLLOW) on a NUL-terminated name that
// stays in the getdents buffer: unix.Fstatat would copy every name into a new string.
func lstatAt(fd int, name *byte, st *unix.Stat_t) error {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(fd), uintptr(unsafe.Pointer(name)),
			uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return errno
		}
	}
}
