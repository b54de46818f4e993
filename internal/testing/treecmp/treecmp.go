package treecmp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// Options tune a scan and a comparison; the zero value compares everything rsync -aH keeps
// except the symlinks' own mtimes.
type Options struct {
	// SymlinkTimes also compares the mtime of symlinks themselves (rsync -a sets them on Linux).
	SymlinkTimes bool
	// SkipContent compares sizes but not contents (no hashing).
	SkipContent bool
	// Exclude, when set, leaves out a relative path (and everything below it).
	Exclude func(rel string) bool
	// Workers bounds the goroutines hashing contents (default 4).
	Workers int
}

// Entry is what a scan records about one path.
type Entry struct {
	Path   string      // relative to the root, "/"-separated; the root itself is "."
	Type   fs.FileMode // fs.ModeDir, fs.ModeSymlink, ...; 0 for a regular file
	Perm   uint32      // the 12 low bits of st_mode: permissions, setuid, setgid, sticky
	UID    uint32
	GID    uint32
	Size   int64     // regular files only
	Mtime  time.Time // with nanoseconds
	Target string    // symlinks only
	Rdev   uint64    // device nodes only
	Hash   [sha256.Size]byte
	// LinkGroup is, for a name sharing its inode with other names in the same tree, the
	// smallest of those names; "" when the inode has one name in the tree.
	LinkGroup string

	dev, ino uint64
}

// Tree is the result of a scan.
type Tree struct {
	Root    string
	Entries map[string]*Entry
}

// Kind names a kind of difference.
type Kind string

// The kinds of difference Diff reports.
const (
	Missing  Kind = "missing"  // in A, not in B
	Extra    Kind = "extra"    // in B, not in A
	Type     Kind = "type"     // file vs directory vs symlink ...
	Mode     Kind = "mode"     // permission, setuid, setgid or sticky bits
	UID      Kind = "uid"      // numeric owner
	GID      Kind = "gid"      // numeric group
	Size     Kind = "size"     // regular files
	Mtime    Kind = "mtime"    // files, directories, specials (symlinks with Options.SymlinkTimes)
	Target   Kind = "target"   // symlink target
	Rdev     Kind = "rdev"     // device number
	Content  Kind = "content"  // same size, different bytes
	HardLink Kind = "hardlink" // the names are grouped into inodes differently
)

// Difference is one difference between two trees.
type Difference struct {
	Path string
	Kind Kind
	A, B string // the two values, readable
}

// String renders a difference on one line; paths are Go-quoted so newlines stay visible.
func (d Difference) String() string {
	return fmt.Sprintf("%s %s: %s != %s", d.Kind, strconv.Quote(d.Path), d.A, d.B)
}

// Format renders at most limit differences, one per line, and says how many were left out.
func Format(diffs []Difference, limit int) string {
	var b strings.Builder
	for i, d := range diffs {
		if i == limit {
			fmt.Fprintf(&b, "... and %d more\n", len(diffs)-limit)
			break
		}
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Compare scans both trees and returns their differences (nil when equal).
func Compare(a, b string, opts Options) ([]Difference, error) {
	ta, err := Scan(a, opts)
	if err != nil {
		return nil, err
	}
	tb, err := Scan(b, opts)
	if err != nil {
		return nil, err
	}
	return Diff(ta, tb, opts), nil
}

// Scan records every entry under root with Lstat (symlinks are never followed) and hashes
// regular files unless opts.SkipContent.
func Scan(root string, opts Options) (*Tree, error) {
	t := &Tree{Root: root, Entries: map[string]*Entry{}}
	inodes := map[[2]uint64][]*Entry{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return fmt.Errorf("treecmp: walk: %w", walkErr)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return fmt.Errorf("treecmp: %w", err)
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && opts.Exclude != nil && opts.Exclude(rel) {
			info, err := os.Lstat(path)
			if err == nil && info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		e, err := lstat(path, rel)
		if err != nil {
			return err
		}
		t.Entries[rel] = e
		if e.Type != fs.ModeDir {
			key := [2]uint64{e.dev, e.ino}
			inodes[key] = append(inodes[key], e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, group := range inodes {
		if len(group) < 2 {
			continue
		}
		first := group[0].Path
		for _, e := range group {
			first = min(first, e.Path)
		}
		for _, e := range group {
			e.LinkGroup = first
		}
	}
	if !opts.SkipContent {
		if err := t.hash(inodes, opts.Workers); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func lstat(path, rel string) (*Entry, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("treecmp: %w", err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("treecmp: %s: no stat_t", path)
	}
	e := &Entry{
		Path:  rel,
		Type:  info.Mode().Type(),
		Perm:  st.Mode & 0o7777,
		UID:   st.Uid,
		GID:   st.Gid,
		Mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		dev:   st.Dev,
		ino:   st.Ino,
	}
	switch {
	case e.Type == 0:
		e.Size = st.Size
	case e.Type == fs.ModeSymlink:
		if e.Target, err = os.Readlink(path); err != nil {
			return nil, fmt.Errorf("treecmp: %w", err)
		}
	case e.Type&fs.ModeDevice != 0:
		e.Rdev = st.Rdev
	}
	return e, nil
}

// hash computes the SHA-256 of each regular inode once, with a bounded pool.
func (t *Tree) hash(inodes map[[2]uint64][]*Entry, workers int) error {
	if workers <= 0 {
		workers = 4
	}
	grp, ctx := errgroup.WithContext(context.Background())
	grp.SetLimit(workers)
	for _, group := range inodes {
		if group[0].Type != 0 {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		grp.Go(func() error {
			sum, err := hashFile(filepath.Join(t.Root, filepath.FromSlash(group[0].Path)))
			if err != nil {
				return err
			}
			for _, e := range group {
				e.Hash = sum
			}
			return nil
		})
	}
	return grp.Wait()
}

func hashFile(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, fmt.Errorf("treecmp: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("treecmp: read %s: %w", path, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// Diff compares two scans. A missing or extra directory is reported once, not once per
// entry below it.
func Diff(a, b *Tree, opts Options) []Difference {
	var diffs []Difference
	add := func(path string, kind Kind, va, vb string) {
		diffs = append(diffs, Difference{Path: path, Kind: kind, A: va, B: vb})
	}
	for _, path := range sortedPaths(a) {
		ea := a.Entries[path]
		eb, ok := b.Entries[path]
		if !ok {
			if !parentMissing(path, b) {
				add(path, Missing, describe(ea)+belowCount(path, a, b), "absent")
			}
			continue
		}
		if ea.Type != eb.Type {
			add(path, Type, typeName(ea.Type), typeName(eb.Type))
			continue
		}
		if ea.Type != fs.ModeSymlink && ea.Perm != eb.Perm {
			add(path, Mode, fmt.Sprintf("%04o", ea.Perm), fmt.Sprintf("%04o", eb.Perm))
		}
		if ea.UID != eb.UID {
			add(path, UID, fmt.Sprint(ea.UID), fmt.Sprint(eb.UID))
		}
		if ea.GID != eb.GID {
			add(path, GID, fmt.Sprint(ea.GID), fmt.Sprint(eb.GID))
		}
		if (ea.Type != fs.ModeSymlink || opts.SymlinkTimes) && !ea.Mtime.Equal(eb.Mtime) {
			add(path, Mtime, ea.Mtime.UTC().Format(time.RFC3339Nano), eb.Mtime.UTC().Format(time.RFC3339Nano))
		}
		switch {
		case ea.Type == 0:
			if ea.Size != eb.Size {
				add(path, Size, fmt.Sprint(ea.Size), fmt.Sprint(eb.Size))
			} else if !opts.SkipContent && ea.Hash != eb.Hash {
				add(path, Content, fmt.Sprintf("sha256:%x", ea.Hash[:8]), fmt.Sprintf("sha256:%x", eb.Hash[:8]))
			}
		case ea.Type == fs.ModeSymlink:
			if ea.Target != eb.Target {
				add(path, Target, strconv.Quote(ea.Target), strconv.Quote(eb.Target))
			}
		case ea.Type&fs.ModeDevice != 0:
			if ea.Rdev != eb.Rdev {
				add(path, Rdev, fmt.Sprint(ea.Rdev), fmt.Sprint(eb.Rdev))
			}
		}
		if ea.LinkGroup != eb.LinkGroup {
			add(path, HardLink, groupName(ea.LinkGroup), groupName(eb.LinkGroup))
		}
	}
	for _, path := range sortedPaths(b) {
		if _, ok := a.Entries[path]; !ok && !parentMissing(path, a) {
			add(path, Extra, "absent", describe(b.Entries[path])+belowCount(path, b, a))
		}
	}
	return diffs
}

func sortedPaths(t *Tree) []string {
	paths := make([]string, 0, len(t.Entries))
	for p := range t.Entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// parentMissing reports whether path's parent directory is absent from t (so the
// difference is already reported at the parent).
func parentMissing(path string, t *Tree) bool {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return false
	}
	_, ok := t.Entries[path[:i]]
	return !ok
}

// belowCount describes how many entries under a missing directory are missing too.
func belowCount(dir string, have, lack *Tree) string {
	n := 0
	prefix := dir + "/"
	for p := range have.Entries {
		if strings.HasPrefix(p, prefix) {
			if _, ok := lack.Entries[p]; !ok {
				n++
			}
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (and %d entries below)", n)
}

func describe(e *Entry) string { return typeName(e.Type) }

func typeName(t fs.FileMode) string {
	switch {
	case t == 0:
		return "file"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeNamedPipe != 0:
		return "fifo"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "char device"
	case t&fs.ModeDevice != 0:
		return "block device"
	default:
		return "irregular " + t.String()
	}
}

func groupName(g string) string {
	if g == "" {
		return "alone"
	}
	return "linked with " + strconv.Quote(g)
}

// ErrDifferent is returned by Equal when the trees differ.
var ErrDifferent = errors.New("trees differ")

// Equal compares two trees and returns nil, or an error wrapping ErrDifferent that lists
// up to 50 differences.
func Equal(a, b string, opts Options) error {
	diffs, err := Compare(a, b, opts)
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: %d differences between %s and %s:\n%s", ErrDifferent, len(diffs), a, b, Format(diffs, 50))
	}
	return nil
}
