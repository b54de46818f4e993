// Command sandbox-init is the first process of a test kubelet's container (see package
// sandbox): started by the kubelet in a new mount namespace with the path of a Spec, it sets
// the container up and execs its command. When that fails, it writes the reason to file
// descriptor 3, which the kubelet reads as the container's start error, and exits 127. On
// success descriptor 3 closes with the exec and the kubelet reads nothing.
package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"github.com/krsync/krsync/internal/testing/kubelet/sandbox"
)

// startErrorFD is where the kubelet reads why the container did not start.
const startErrorFD = 3

func main() {
	// Capabilities, user and no_new_privs are per thread and exec runs on this one.
	runtime.LockOSThread()
	syscall.CloseOnExec(startErrorFD)
	err := run(os.Args[1:])
	fmt.Fprintln(os.NewFile(startErrorFD, "start-error"), err)
	os.Exit(127)
}

func run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: sandbox-init SPEC.json")
	}
	spec, err := sandbox.ReadSpec(args[0])
	if err != nil {
		return err
	}
	return sandbox.Enter(spec)
}
