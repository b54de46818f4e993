// Package prune deletes what a destination directory holds and its source directory does
// not: the deletions of krsync --mirror. Each deletion is decided against a fresh listing
// of the source directory and, right before the unlink, a fresh lookup of the name in the
// source (present: kept), so an entry the source gains while krsync runs is never deleted.
// It never follows a symlink of either tree and never leaves either root (package confine),
// keeps what the walk's fpart -x/-X/-y/-Y patterns leave out (as rsync --delete keeps
// excluded files) and the paths krsync owns while a run lasts (its temporary directory, a
// state directory in the destination), with the directories above them.
//
// It does not copy, walk the source, or know about leases; the worker hands it the
// directories of a prune lease (Dirs), and the entries of a file partition whose
// destination holds a directory where the source holds a file, symlink or special file
// (MakeWay: rsync cannot replace a non-empty directory). It is Linux only.
package prune
