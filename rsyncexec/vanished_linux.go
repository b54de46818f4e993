package rsyncexec

import (
	"errors"

	"golang.org/x/sys/unix"
)

// confirmVanished looks up each path rsync said was gone below source (without following
// symlinks): one that is there after all (or that cannot be looked up) did not vanish, and
// becomes a failed path. rsync says "No such file or directory" of names it could not
// build, too; taken for vanished, such a file would be missing from a run that ends 0.
// Paths past the first maxFailedPaths are not named, and cannot be looked up.
func (r *stderrReader) confirmVanished(source string) {
	if len(r.vanished) == 0 {
		return
	}
	root, err := unix.Open(source, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	gone := r.vanished[:0:0]
	for _, rel := range r.vanished {
		var st unix.Stat_t
		var statErr error = unix.ENOENT
		if err == nil {
			statErr = unix.Fstatat(root, rel, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err == nil && (errors.Is(statErr, unix.ENOENT) || errors.Is(statErr, unix.ENOTDIR)) {
			gone = append(gone, rel)
			continue
		}
		r.vanishedCount--
		r.otherErrors++
		if !r.seenFailed[rel] {
			r.seenFailed[rel] = true
			r.failedCount++
			if len(r.failed) < maxFailedPaths {
				r.failed = append(r.failed, rel)
			}
		}
	}
	if err == nil {
		unix.Close(root)
	}
	r.vanished = gone
}
