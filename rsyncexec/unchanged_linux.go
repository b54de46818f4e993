//go:build linux

package rsyncexec

import (
	"bytes"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// QuickCheckSafe says whether the user's options ask rsync for nothing beyond what
// dropUnchanged and DestCompare compare: -a (permissions, times, owner, group, links, devices and specials),
// --numeric-ids, -H, -S, -v. Anything else (-c, -A, -X, -I, --chmod, --size-only, ...) changes
// what "unchanged" means, and every entry goes to rsync as listed.
func QuickCheckSafe(args []string) bool {
	for _, a := range args {
		switch a {
		case "--archive", "--numeric-ids", "--hard-links", "--sparse", "--verbose":
			continue
		}
		if len(a) > 1 && a[0] == '-' && a[1] != '-' && strings.Trim(a[1:], "aHSv") == "" {
			continue
		}
		return false
	}
	return true
}

// dropUnchanged removes from a cleaned list the entries whose destination already equals the
// source in type, mode, owner, group, mtime (to the nanosecond, as --modify-window=-1 asks),
// size and link target: rsync's quick check would skip their data and find no attribute to
// set. Why bother: with --files-from rsync 3.2 reads the list a byte at a time and opens every
// path component of every entry (its secure relative opens), several times slower per entry
// than a recursive run, which made an unchanged re-sync several times slower than one rsync
// -a. Conservative on purpose: hard-linked files (either side), devices, FIFOs and sockets,
// and anything that cannot be read are left to rsync. Paths are resolved below each root
// without following any symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so a symlink
// planted in the destination can never make an entry look unchanged.
// A destination file with more links than the source's gets an inode of its own on the way
// (see unchanged): the copy then gives it the source's link structure.
// root says whether the root itself ("." in the list) is unchanged too.
func dropUnchanged(source, dest string, list []byte, root bool) (kept []byte, rootUnchanged bool, dropped int64) {
	c := &checkers{source: source, dest: dest}
	defer c.close()
	first, err := c.get(0)
	if err != nil {
		return list, false, 0
	}
	if root {
		var s, d unix.Stat_t
		rootUnchanged = unix.Fstat(first.src.fd, &s) == nil && unix.Fstat(first.dst.fd, &d) == nil && sameAttributes(&s, &d)
	}
	entries := bytes.Split(bytes.TrimSuffix(list, []byte{0}), []byte{0})
	if len(list) == 0 {
		entries = nil
	}
	var b bytes.Buffer
	missing := 0
	window := firstCopyRun // the first window no larger than a first copy's run
	for start := 0; start < len(entries); {
		part := entries[start:min(start+window, len(entries))]
		same, inDest := c.check(part)
		for k, entry := range part {
			if missing == firstCopyRun {
				// A first copy of this part of the tree: the rest goes to rsync unchecked.
				for _, e := range entries[start+k:] {
					b.Write(e)
					b.WriteByte(0)
				}
				return b.Bytes(), rootUnchanged, dropped
			}
			if same[k] {
				dropped++
				missing = 0
				continue
			}
			if inDest[k] {
				missing = 0
			} else {
				missing++
			}
			b.Write(entry)
			b.WriteByte(0)
		}
		start += len(part)
		window = min(2*window, maxCheckWindow)
	}
	return b.Bytes(), rootUnchanged, dropped
}

// On network storage every lookup is a round trip: the entries of a window are compared by
// up to maxCheckers goroutines, each with its own pair of roots (a beneath keeps one parent
// open, so it is not shared), in contiguous chunks (siblings stay together).
const (
	maxCheckers    = 8
	checkChunk     = 16
	maxCheckWindow = maxCheckers * checkChunk * 2
)

// checkers are the goroutines' pairs of roots, opened when first needed.
type checkers struct {
	source, dest string
	pairs        [maxCheckers]*rootPair
}

type rootPair struct{ src, dst *beneath }

func (c *checkers) get(i int) (*rootPair, error) {
	if c.pairs[i] != nil {
		return c.pairs[i], nil
	}
	src, err := openBeneath(c.source)
	if err != nil {
		return nil, err
	}
	dst, err := openBeneath(c.dest)
	if err != nil {
		src.close()
		return nil, err
	}
	c.pairs[i] = &rootPair{src: src, dst: dst}
	return c.pairs[i], nil
}

func (c *checkers) close() {
	for _, p := range c.pairs {
		if p != nil {
			p.src.close()
			p.dst.close()
		}
	}
}

// check compares every entry of part (see unchanged). An entry a goroutine could not open its
// roots for counts as changed and present: rsync gets it, and the run of misses goes on.
func (c *checkers) check(part [][]byte) (same, inDest []bool) {
	same, inDest = make([]bool, len(part)), make([]bool, len(part))
	run := func(i, from, to int) {
		p, err := c.get(i)
		for k := from; k < to; k++ {
			if err != nil {
				inDest[k] = true
				continue
			}
			same[k], inDest[k] = unchanged(p.src, p.dst, strings.TrimPrefix(string(part[k]), "./"))
		}
	}
	goroutines := min(maxCheckers, len(part)/checkChunk)
	if goroutines <= 1 {
		run(0, 0, len(part))
		return same, inDest
	}
	var wg sync.WaitGroup
	per := (len(part) + goroutines - 1) / goroutines
	for i := range goroutines {
		from, to := i*per, min((i+1)*per, len(part))
		if from >= to {
			break
		}
		wg.Go(func() { run(i, from, to) })
	}
	wg.Wait()
	return same, inDest
}

// firstCopyRun is how many entries in a row may be missing from the destination before
// dropUnchanged stops looking: the partition is then being copied for the first time, and a
// lookup per entry that rsync repeats anyway would only add a round trip per file on network
// storage. An unchanged re-sync finds its entries and keeps looking.
const firstCopyRun = 64

// unchanged compares one entry on both sides; inDest says whether the destination has it.
func unchanged(src, dst *beneath, rel string) (same, inDest bool) {
	var s, d unix.Stat_t
	// The destination first: in a first copy it has nothing, and the source's lstat (which
	// rsync repeats anyway) is saved.
	if dst.lstat(rel, &d) != nil {
		return false, false
	}
	if src.lstat(rel, &s) != nil {
		return false, true
	}
	if s.Mode&unix.S_IFMT == unix.S_IFREG && d.Mode&unix.S_IFMT == unix.S_IFREG && d.Nlink > s.Nlink {
		// The destination's file shares its inode with names that the source does not
		// link to it (a destination filled by another tool, a hard link planted, perhaps
		// to a file outside the destination). rsync's quick check would leave it so, and
		// would set the source's mode and owner on that shared inode; a later write
		// through one name would change the other. The name gets an inode of its own
		// first (privatize), and rsync copies it, or links it into its source group, anew.
		if err := dst.privatize(rel); err == nil {
			return false, true
		}
	}
	return sameEntry(&s, &d, func() (string, string, error) {
		a, err := src.readlink(rel)
		if err != nil {
			return "", "", err
		}
		b, err := dst.readlink(rel)
		return a, b, err
	}), true
}

// sameEntry is the one place that decides whether an entry is unchanged: d, the
// destination's lstat, shows everything rsync -a --numeric-ids would set from s, the
// source's: type, mode, owner, group, mtime to the nanosecond, and by type the size (regular
// files of one link on both sides: hard links are left to rsync's -H) or the link target
// (targets reads both, asked only for symlinks). Devices, FIFOs and sockets are never
// unchanged: rsync compares what they carry itself.
func sameEntry(s, d *unix.Stat_t, targets func() (src, dst string, err error)) bool {
	if !sameAttributes(s, d) {
		return false
	}
	switch s.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return true
	case unix.S_IFREG:
		return s.Size == d.Size && s.Nlink == 1 && d.Nlink == 1
	case unix.S_IFLNK:
		a, b, err := targets()
		return err == nil && a == b
	default:
		return false
	}
}

// sameAttributes compares what rsync -a --numeric-ids sets on every kind of entry.
func sameAttributes(s, d *unix.Stat_t) bool {
	return s.Mode == d.Mode && s.Uid == d.Uid && s.Gid == d.Gid &&
		s.Mtim.Sec == d.Mtim.Sec && s.Mtim.Nsec == d.Mtim.Nsec
}
