// Package leaseapi is the contract between the coordinator and its workers: the wire types
// of the work-lease HTTP API (docs/api.md) and the client workers use to call it.
//
// It deliberately knows nothing of how the coordinator keeps its queue, nor of how a worker
// runs rsync; both sides import it and never each other.
package leaseapi
