package main

import "errors"

// LocalCmd is the `krsync local` command.
type LocalCmd struct{}

// Run is not implemented yet.
func (LocalCmd) Run() error { return errors.New("local: not implemented yet") }
