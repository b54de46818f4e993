// Package verify compares two directory trees and reports every difference that matters to
// a copy made with rsync -aH --numeric-ids: the type of each entry, its size, its mode bits
// (setuid, setgid and sticky included), its numeric owner and group, the mtime of files,
// directories (the root included) and symlinks to the nanosecond, symlink targets, device
// numbers, hard-link grouping across the whole tree, and entries missing from or extraneous
// in the destination; with Config.Checksum also the contents of regular files of equal size.
//
// It is krsync's independent witness: it shares no code with the copy path (fpart, the
// coordinator, the workers, rsyncexec) and does not trust rsync's idea of "unchanged". It
// reads both trees with getdents(2) and fstatat(2) on directory file descriptors opened
// beneath the roots (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so it never follows a
// symlink below a root and handles names of any bytes; a bounded pool of workers reads
// directories and compares contents, and memory grows with the widest directory and the
// number of multiply-linked names, not with the size of the tree.
//
// It deliberately does not: write to either tree, compare atime, ctime, ACLs or extended
// attributes, look for differences below excluded paths (Config.Exclude works like fpart's
// -x, so excluded entries are neither compared nor reported extraneous), descend into
// directories on one side only (a missing or extraneous directory is one difference), or
// talk to anything: Run compares two whole trees in one process (krsync verify); Dirs
// compares a list of directories one level deep, and returns the hard-linked names it met
// for HardLinkDifferences, so that a caller can spread a comparison over many processes
// (krsync --verify hands the walk's directories out as verify leases, and the coordinator,
// where every lease's names meet, judges the grouping of hard links) and still report what
// one Run would.
package verify
