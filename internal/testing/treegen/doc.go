// Package treegen writes seeded, deterministic directory trees for tests and benchmarks: plain
// shapes (many small files, a few big ones, a million tiny ones, created in parallel) and, with
// Spec.Hostile, every corner rsync must get right (hostile names, deep paths, all symlink kinds,
// hard links across directories, sparse files, special files, every mode, foreign owners, and
// explicit file and directory times set after the children exist). It only creates trees; it
// does not compare them (that is internal/treecmp) and it shares no code with krsync's packages.
package treegen
