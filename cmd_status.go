package main

import "errors"

// StatusCmd is the `krsync status` command.
type StatusCmd struct{}

// Run is not implemented yet.
func (StatusCmd) Run() error { return errors.New("status: not implemented yet") }
