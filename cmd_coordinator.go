package main

import "errors"

// CoordinatorCmd is the `krsync coordinator` command.
type CoordinatorCmd struct{}

// Run is not implemented yet.
func (CoordinatorCmd) Run() error { return errors.New("coordinator: not implemented yet") }
