// Package treecmp is the independent judge of the tests: it scans two trees with Lstat and
// reports, in readable lines, every difference rsync -aH would care about (type, mode bits
// including setuid/setgid/sticky, numeric owner, size, mtime, symlink target, device number,
// content, hard-link grouping, missing and extra entries). It shares no code with krsync's
// packages on purpose, so a bug there cannot hide itself here. It ignores atime and ctime and
// does not look at ACLs or extended attributes.
package treecmp
