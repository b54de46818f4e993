package prune

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/confine"
	"github.com/krsync/krsync/fpart"
)

// Config says where to prune and what to spare.
type Config struct {
	// Source and Dest are the roots; the paths given to Dirs and MakeWay are relative to both.
	Source, Dest string
	// Filter is the walk's -x/-X/-y/-Y choice (nil: none): a destination entry the walk
	// would leave out is kept.
	Filter *fpart.Filter
	// Keep are paths relative to Dest that are never deleted, nor the directories above them.
	Keep []string
	// KeepPrefix are prefixes of names at the top of Dest that are never deleted (krsync's
	// temporary directory of each rsync run).
	KeepPrefix []string
	// DryRun deletes nothing; Deleted is still called for what would be deleted.
	DryRun bool
	// Deleted, when set, is called for each entry deleted (or that a dry run would delete),
	// with its path relative to Dest; the entries of a deleted directory come before it.
	Deleted func(rel string, isDir bool)
}

// Result counts what one call deleted (or, in a dry run, would delete).
type Result struct {
	Deleted int64
	// Kept counts extraneous entries left in place because they, or something below them,
	// are left out by the walk or owned by krsync.
	Kept int64
}

// maxFailedPaths bounds the paths an Error names.
const maxFailedPaths = 100

// Error is a call in which some entries could not be judged or deleted (a source directory
// that cannot be read, a destination entry that cannot be removed): they were kept, the
// others were handled. A retry may help.
type Error struct {
	// Paths are the entries relative to the roots (at most 100); Count counts them all.
	Paths []string
	Count int
	// Err is the first error.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("mirror: %d path(s) not pruned, e.g. %q: %v", e.Count, e.Paths[0], e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrBadPath is wrapped by the error of a path that could leave the roots (absolute, "..").
var ErrBadPath = errors.New("bad path")

// Dirs deletes, for every listed directory, the entries of the destination directory that
// the source directory does not hold (directories with their contents), except those the
// walk leaves out and Keep. A destination directory that is missing, a symlink or no
// directory is skipped: the prune of its parent, or the copy, deals with it. A source
// directory that is gone is an empty listing: each name is still looked up right before
// its deletion.
func Dirs(ctx context.Context, cfg Config, dirs []string) (Result, error) {
	return each(ctx, cfg, dirs, func(p *pruner, rel string) {
		fd, err := confine.OpenDir(p.dst, rel, unix.O_RDONLY)
		if err != nil {
			if !absent(err) {
				p.fail(rel, err)
			}
			return
		}
		if !p.sameMount(fd) {
			unix.Close(fd)
			p.fail(rel, errOtherMount)
			return
		}
		p.pruneContents(ctx, fd, rel)
	})
}

// each runs do for every cleaned path of rels with one pruner, until ctx ends; a path that
// cannot be cleaned is a failure of its own.
func each(ctx context.Context, cfg Config, rels []string, do func(p *pruner, rel string)) (Result, error) {
	p, err := newPruner(cfg)
	if err != nil {
		return Result{}, err
	}
	defer p.close()
	for _, rel := range rels {
		if ctx.Err() != nil {
			break
		}
		rel, err := cleanRel(rel)
		if err != nil {
			p.fail(rel, err)
			continue
		}
		do(p, rel)
	}
	return p.result(ctx)
}

// MakeWay removes, for every listed entry that the source holds as something other than a
// directory, a destination directory of that name with its contents (each entry below it
// judged as Dirs judges them), so that rsync can put the entry in its place: rsync cannot
// replace a non-empty directory with a file without --force, which would delete excluded
// entries and follow no fresh lookup. Other entries are left to rsync, which replaces a
// file or symlink by a directory, or by another file, itself.
func MakeWay(ctx context.Context, cfg Config, entries []string) (Result, error) {
	return each(ctx, cfg, entries, func(p *pruner, rel string) {
		if rel != "." {
			p.makeWay(ctx, rel)
		}
	})
}

type pruner struct {
	cfg       Config
	src, dst  int             // O_PATH descriptors of the roots
	keep      map[string]bool // Keep and the directories above them
	res       Result
	failed    []string
	failCount int
	firstErr  error
	// lookParent and lookFD cache destIsDir's open parent; lookFD is -1 when that parent
	// could not be opened and -2 when none is cached.
	lookParent string
	lookFD     int
	// mount is the destination root's mount ID (0 when the kernel cannot tell): see
	// sameMount.
	mount uint64
}

// errOtherMount is a destination directory on another mount than the destination root.
var errOtherMount = errors.New("another file system is mounted there: --mirror does not delete across mount points")

// sameMount says whether the directory fd is on the destination root's mount. A file
// system mounted inside the destination is not the destination's to empty (rsync --delete
// would, unless -x): its directory is left whole, and named as not pruned.
func (p *pruner) sameMount(fd int) bool {
	return p.mount == 0 || mountID(fd) == p.mount
}

// mountID is the mount ID of the file fd (statx STATX_MNT_ID), 0 when unknown.
func mountID(fd int) uint64 {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &st); err != nil || st.Mask&unix.STATX_MNT_ID == 0 {
		return 0
	}
	return st.Mnt_id
}

func newPruner(cfg Config) (*pruner, error) {
	src, err := unix.Open(cfg.Source, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mirror: source %s: %w", cfg.Source, err)
	}
	dst, err := unix.Open(cfg.Dest, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(src)
		return nil, fmt.Errorf("mirror: destination %s: %w", cfg.Dest, err)
	}
	p := &pruner{cfg: cfg, src: src, dst: dst, keep: map[string]bool{}, lookFD: -2, mount: mountID(dst)}
	for _, k := range cfg.Keep {
		k, err := cleanRel(k)
		if err != nil || k == "." {
			continue
		}
		for ; k != "."; k = path.Dir(k) {
			p.keep[k] = true
		}
	}
	return p, nil
}

func (p *pruner) close() {
	p.closeLook()
	unix.Close(p.src)
	unix.Close(p.dst)
}

func (p *pruner) fail(rel string, err error) {
	if p.failCount < maxFailedPaths {
		p.failed = append(p.failed, rel)
	}
	if p.firstErr == nil {
		p.firstErr = fmt.Errorf("%s: %w", rel, err)
	}
	p.failCount++
}

func (p *pruner) result(ctx context.Context) (Result, error) {
	if err := ctx.Err(); err != nil {
		return p.res, fmt.Errorf("mirror: stopped: %w", err)
	}
	if p.failCount > 0 {
		return p.res, &Error{Paths: p.failed, Count: p.failCount, Err: p.firstErr}
	}
	return p.res, nil
}

// pruneContents deletes the entries of the destination directory fd (at rel; it closes fd)
// that the source does not hold, and returns how many extraneous entries it kept (the
// entries present in the source are not counted).
func (p *pruner) pruneContents(ctx context.Context, fd int, rel string) (kept int64) {
	dir := os.NewFile(uintptr(fd), rel)
	defer dir.Close()
	// Read every name before removing any: removing while reading can make getdents skip
	// entries.
	names, err := dir.Readdirnames(-1)
	if err != nil {
		p.fail(rel, err)
		return 1
	}
	listed, err := p.sourceNames(rel)
	if err != nil {
		p.fail(rel, err)
		return 1
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return 1
		}
		if listed[name] {
			continue
		}
		if !p.entry(ctx, int(dir.Fd()), name, joinRel(rel, name)) {
			kept++
		}
	}
	return kept
}

// sourceNames lists the source directory rel: the fresh listing a prune compares against.
// A source directory that is gone, a symlink or no directory lists nothing.
func (p *pruner) sourceNames(rel string) (map[string]bool, error) {
	fd, err := confine.OpenDir(p.src, rel, unix.O_RDONLY)
	if absent(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	dir := os.NewFile(uintptr(fd), rel)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
}

// inSource looks rel up in the source right now, without following symlinks: the last
// word before a deletion.
func (p *pruner) inSource(rel string) (present, isDir bool, err error) {
	parent, name := path.Split(rel)
	parent = strings.TrimSuffix(parent, "/")
	dirfd := p.src
	if parent != "" {
		fd, err := confine.OpenDir(p.src, parent, unix.O_PATH)
		if absent(err) {
			return false, false, nil
		}
		if err != nil {
			return false, false, fmt.Errorf("source: %w", err)
		}
		defer unix.Close(fd)
		dirfd = fd
	}
	var st unix.Stat_t
	err = unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if absent(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("source: %w", err)
	}
	return true, st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// entry deletes the destination entry name of the directory dirfd (at rel) unless krsync
// owns it, the walk leaves it out, or the source holds it. It reports whether the entry is
// gone (or would be, in a dry run).
func (p *pruner) entry(ctx context.Context, dirfd int, name, rel string) (gone bool) {
	if p.keep[rel] || p.keptByPrefix(rel) {
		p.res.Kept++
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return true
		}
		p.fail(rel, err)
		return false
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if p.cfg.Filter.Skips(rel, isDir) {
		p.res.Kept++
		return false
	}
	if present, _, err := p.inSource(rel); err != nil || present {
		if err != nil {
			p.fail(rel, err)
		}
		return false
	}
	if isDir {
		return p.removeDir(ctx, dirfd, name, rel, func() bool {
			present, _, err := p.inSource(rel)
			return err == nil && !present
		})
	}
	if !p.cfg.DryRun {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return true
			}
			p.fail(rel, err)
			return false
		}
	}
	p.deleted(rel, false)
	return true
}

// removeDir empties the destination directory name of dirfd (at rel) as pruneContents
// does, and removes it when it is then empty and stillExtraneous says so right before.
func (p *pruner) removeDir(ctx context.Context, dirfd int, name, rel string, stillExtraneous func() bool) bool {
	// Another worker may be emptying the same directory (its own prune of a directory the
	// source lost after the walk): a few rounds settle that.
	for range 3 {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return true
			}
			p.fail(rel, err) // swapped for a symlink or a file meanwhile: the next attempt
			return false
		}
		if !p.sameMount(fd) {
			unix.Close(fd)
			p.fail(rel, errOtherMount)
			return false
		}
		if kept := p.pruneContents(ctx, fd, rel); kept > 0 || ctx.Err() != nil {
			return false
		}
		if !stillExtraneous() {
			return false
		}
		if p.cfg.DryRun {
			p.deleted(rel, true)
			return true
		}
		err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		switch {
		case err == nil:
			p.deleted(rel, true)
			return true
		case errors.Is(err, unix.ENOENT):
			return true
		case !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST):
			p.fail(rel, err)
			return false
		}
	}
	p.fail(rel, unix.ENOTEMPTY)
	return false
}

// keptByPrefix says whether rel is a top-level name that starts with one of KeepPrefix.
func (p *pruner) keptByPrefix(rel string) bool {
	if strings.Contains(rel, "/") {
		return false
	}
	for _, prefix := range p.cfg.KeepPrefix {
		if prefix != "" && strings.HasPrefix(rel, prefix) {
			return true
		}
	}
	return false
}

// makeWay removes the destination directory rel when the source holds rel as no directory.
// The destination is looked at first, through the cached parent (a lookup only): almost
// every entry of a files lease is no directory in the destination, and costs one fstatat
// instead of two fresh parent opens and two fstatats. What is deleted is judged again with
// fresh opens: the source lookup and removeDir's own.
func (p *pruner) makeWay(ctx context.Context, rel string) {
	if p.keep[rel] || !p.destIsDir(rel) {
		return
	}
	notDir := func() bool {
		present, isDir, err := p.inSource(rel)
		return err == nil && present && !isDir
	}
	if !notDir() {
		return
	}
	parent, name := path.Split(rel)
	parent = strings.TrimSuffix(parent, "/")
	dirfd := p.dst
	if parent != "" {
		fd, err := confine.OpenDir(p.dst, parent, unix.O_PATH)
		if err != nil {
			return // no such destination directory (yet): nothing in the way
		}
		defer unix.Close(fd)
		dirfd = fd
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return
	}
	p.removeDir(ctx, dirfd, name, rel, notDir)
}

// destIsDir says whether the destination holds rel as a directory, looking rel up in its
// parent opened beneath the destination root; the parent stays open for the next entries
// (a lease lists siblings together). Only a hint: makeWay decides on fresh opens.
func (p *pruner) destIsDir(rel string) bool {
	parent, name := path.Split(rel)
	parent = strings.TrimSuffix(parent, "/")
	if parent != p.lookParent || p.lookFD == -2 {
		p.closeLook()
		p.lookParent, p.lookFD = parent, p.dst
		if parent != "" {
			fd, err := confine.OpenDir(p.dst, parent, unix.O_PATH)
			if err != nil {
				fd = -1 // no such directory: nothing below it is in the way
			}
			p.lookFD = fd
		}
	}
	if p.lookFD == -1 {
		return false
	}
	var st unix.Stat_t
	return unix.Fstatat(p.lookFD, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// closeLook closes destIsDir's cached parent (the root is not closed here).
func (p *pruner) closeLook() {
	if p.lookFD >= 0 && p.lookFD != p.dst {
		unix.Close(p.lookFD)
	}
	p.lookParent, p.lookFD = "", -2
}

func (p *pruner) deleted(rel string, isDir bool) {
	p.res.Deleted++
	if p.cfg.Deleted != nil {
		p.cfg.Deleted(rel, isDir)
	}
}

// absent reports the errors that mean "no such directory entry here": gone, or a component
// on the way that is a file or a symlink (which the tree, copied as is, has nothing below).
func absent(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}

// cleanRel cleans a relative path and refuses one that could leave the roots.
func cleanRel(rel string) (string, error) {
	if strings.HasPrefix(rel, "/") {
		return rel, fmt.Errorf("%w: %q is absolute", ErrBadPath, rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == ".." {
			return rel, fmt.Errorf("%w: %q has a \"..\" component", ErrBadPath, rel)
		}
	}
	return path.Clean(rel), nil
}

func joinRel(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}
