package rsyncexec

import (
	"errors"

	"golang.org/x/sys/unix"
)

// confirmVanished looks up each path rsync said was gone below source (beneath it, without
// following symlinks): one that is there after all (or that cannot be looked up, the source
// included) did not vanish, and becomes a failed path. rsync says "No such file or
// directory" of names it could not build, too; taken for vanished, such a file would be
// missing from a run that ends 0. Paths past the first maxFailedPaths are not named, and
// cannot be looked up.
func (r *stderrReader) confirmVanished(source string) {
	if len(r.vanished) == 0 {
		return
	}
	root, err := openBeneath(source)
	if err == nil {
		defer root.close()
	}
	gone := r.vanished[:0:0]
	for _, rel := range r.vanished {
		if err == nil && isGone(root, rel) {
			gone = append(gone, rel)
			continue
		}
		r.vanishedCount--
		r.addFailed(rel)
	}
	r.vanished = gone
}

// isGone says whether rel is missing below root (a missing parent, or a file on the way).
func isGone(root *beneath, rel string) bool {
	var st unix.Stat_t
	err := root.lstat(rel, &st)
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}
