package main

import "errors"

// WorkerCmd is the `krsync worker` command.
type WorkerCmd struct{}

// Run is not implemented yet.
func (WorkerCmd) Run() error { return errors.New("worker: not implemented yet") }
