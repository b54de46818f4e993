// Package confine opens and removes paths below a root directory without ever following a
// symlink or leaving the root (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, with a fallback of
// one O_NOFOLLOW open per component on kernels before 5.6). It is the one owner of removal
// below the destination: rsyncexec removes krsync's temporary directory with it, and package
// prune the entries --mirror deletes.
//
// It knows nothing of rsync, partitions or the walk's options. It is Linux only.
package confine
