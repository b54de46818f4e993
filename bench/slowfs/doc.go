// Package slowfs is a FUSE pass-through file system for benchmarks: it mirrors a directory
// and makes every metadata request the kernel sends cost a fixed delay (and, optionally,
// every read and write a delay per MiB), modelling network storage such as a LAN NFS
// server, where each lookup, getattr or create is a round trip. It counts the requests
// by kind, so a benchmark can report how many operations a tool caused as well as how
// long it took.
//
// The delay is applied per FUSE request, below go-fuse's node layer (a wrapper around the
// fuse.RawFileSystem that fs.NewNodeFS builds over fs.NewLoopbackRoot): one READDIR
// request returns a batch of entries for one delay, like an NFS READDIR, and requests
// the node API does not show (access, statx) are delayed and counted too. By default the
// kernel caches neither entries nor attributes (both timeouts 0), so every stat, every
// path component and every open reaches the file system: the worst case of an NFS
// client, and a deterministic count. Config.EntryTTL and Config.AttrTTL model a caching
// client instead.
//
// What passes through unchanged: contents, modes, numeric owners, atime and mtime, hard
// links (inode numbers are the backing file system's), symlinks, special files and names
// of any bytes. Change times differ (the pass-through sets them itself).
//
// It is a benchmark tool: it is not part of the krsync binary, and it needs /dev/fuse and
// fusermount3 (Debian's fuse3; scripts/install-deps installs it).
package slowfs
