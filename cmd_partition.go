package main

import "errors"

// PartitionCmd is the `krsync partition` command.
type PartitionCmd struct{}

// Run is not implemented yet.
func (PartitionCmd) Run() error { return errors.New("partition: not implemented yet") }
