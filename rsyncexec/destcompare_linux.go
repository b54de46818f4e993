//go:build linux

package rsyncexec

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/confine"
)

// DestCompare makes dropUnchanged's decision (sameEntry) during the walk, which has the
// source's lstat of every entry in hand: an entry the destination already holds unchanged
// then costs one lookup in the destination and never reaches a partition, a lease, a worker
// or rsync. Only for a walk that sees the destination exactly as the workers do, and for
// rsync options QuickCheckSafe accepts. Safe for concurrent use: the walk reads directories
// on several goroutines.
type DestCompare struct {
	root int // the destination, O_PATH
}

// OpenDestCompare opens the destination root (following a symlink given as the root, as
// rsync does with its destination argument).
func OpenDestCompare(dest string) (*DestCompare, error) {
	fd, err := unix.Open(dest, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", dest, err)
	}
	return &DestCompare{root: fd}, nil
}

// Close closes the destination root; the DestDirs still open stay usable.
func (c *DestCompare) Close() { unix.Close(c.root) }

// Dir opens the destination's directory rel ("." for the root) beneath the root, following
// no symlink on the way (confine.OpenDir): a symlink planted in the destination can never
// make an entry look unchanged. Nil when the destination has no such directory (a first copy
// of it: nothing in it can be unchanged) or it cannot be opened.
func (c *DestCompare) Dir(rel string) *DestDir {
	fd, err := confine.OpenDir(c.root, rel, unix.O_PATH)
	if err != nil {
		return nil
	}
	return &DestDir{fd: fd}
}

// Compare is Dir in the shape the walk asks for (coordinator.Config.CompareDest): for the
// walk's directory rel, whether an entry is unchanged, and a func that closes the directory;
// nil, nil when Dir is nil.
func (c *DestCompare) Compare(rel string) (func(srcDir int, name string, s *unix.Stat_t) bool, func()) {
	d := c.Dir(rel)
	if d == nil {
		return nil, nil
	}
	return d.Unchanged, d.Close
}

// DestDir is one open destination directory.
type DestDir struct{ fd int }

// Close closes the directory.
func (d *DestDir) Close() { unix.Close(d.fd) }

// Unchanged says whether the destination's entry name (in this directory) already equals
// the source's, whose lstat is s and whose directory srcDir is an open descriptor (read for
// a symlink's target).
func (d *DestDir) Unchanged(srcDir int, name string, s *unix.Stat_t) bool {
	var st unix.Stat_t
	if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return sameEntry(s, &st, func() (string, string, error) {
		a, err := readlinkAt(srcDir, name)
		if err != nil {
			return "", "", err
		}
		b, err := readlinkAt(d.fd, name)
		return a, b, err
	})
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
