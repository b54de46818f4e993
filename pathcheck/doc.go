// Package pathcheck holds the checks of a copy's two roots that every command makes before
// anything is written: the source is a directory this process can list, the destination one
// it can create entries in, and neither lies inside the other. The coordinator, the workers
// and the local runner all ask here, so each rule and its message exist once.
//
// It deliberately creates nothing: choosing a state directory or creating the destination
// is the caller's decision.
package pathcheck
