// Package local runs a whole copy on one machine: a coordinator and N workers in one
// process, talking over real HTTP on loopback, the same code paths as in Kubernetes. It is
// `krsync local` without the command line: it checks the paths and options before anything
// is written, chooses the state directory (the coordinator creates and forgets it), draws
// the progress bar, and says how
// the run ended as an error the caller maps to an exit code.
//
// It deliberately knows nothing of flags or exit codes (package main translates) and
// nothing of Kubernetes.
package local
