package main

import "errors"

// ManifestsCmd is the `krsync manifests` command.
type ManifestsCmd struct{}

// Run is not implemented yet.
func (ManifestsCmd) Run() error { return errors.New("manifests: not implemented yet") }
