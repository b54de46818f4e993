//go:build !(linux && (amd64 || arm64 || riscv64 || ppc64le || ppc64 || s390x || loong64 || mips64 || mips64le))

package fpart

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// lstatAt is fstatat(fd, name, st, AT_SYMLINK_NOFOLLOW) on a NUL-terminated name.
func lstatAt(fd int, name *byte, st *unix.Stat_t) error {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(name), n)) != 0 {
		n++
	}
	path := unsafe.String(name, n)
	for {
		err := unix.Fstatat(fd, path, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}
