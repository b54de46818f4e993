package verify_test

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/internal/testing/testbin"
	"github.com/krsync/krsync/internal/testing/treecmp"
	"github.com/krsync/krsync/internal/testing/treegen"
	"github.com/krsync/krsync/verify"
)

// The trees every test compares: a hostile tree (treegen Hostile) and a random one (hostile
// names, modes, hard links, symlinks and FIFOs at every depth, the top level included),
// generated once per test binary. Tests never write to them: they copy them first.
var trees struct {
	sync.Once
	dir string
	err error
}

var treeNames = []string{"hostile", "random"}

func sourceTree(t *testing.T, name string) string {
	t.Helper()
	trees.Do(func() {
		trees.dir, trees.err = os.MkdirTemp("", "krsync-verify-test-")
		if trees.err != nil {
			return
		}
		_, trees.err = treegen.Generate(filepath.Join(trees.dir, "hostile"),
			treegen.Spec{Seed: 10, Files: 120, Hostile: true, SparseSize: 1 << 20})
		if trees.err == nil {
			_, trees.err = treegen.Random(filepath.Join(trees.dir, "random"), treegen.RandomSpec{Seed: 10, Entries: 250})
		}
	})
	if trees.err != nil {
		t.Fatalf("generate the test trees (seed 10): %v", trees.err)
	}
	return filepath.Join(trees.dir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if trees.dir != "" {
		os.RemoveAll(trees.dir)
	}
	os.Exit(code)
}

// rsyncCopy copies src into a new directory with rsync -aH --numeric-ids: the equal pair.
func rsyncCopy(t *testing.T, src string) string {
	t.Helper()
	rsync := testbin.Program(t, "rsync")
	dest := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command(rsync, "-aH", "--numeric-ids", src+"/", dest+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	return dest
}

// diffKey is what the tests compare: the path and the kind of a difference.
type diffKey struct {
	Path string
	Kind string
}

func (k diffKey) String() string { return fmt.Sprintf("%s %q", k.Kind, k.Path) }

func runVerify(t *testing.T, src, dest string, checksum bool, exclude ...string) ([]verify.Difference, verify.Summary) {
	t.Helper()
	var diffs []verify.Difference
	sum, err := verify.Run(context.Background(), verify.Config{
		Source: src, Dest: dest, Workers: 3, Checksum: checksum, Exclude: exclude,
		Report: func(d verify.Difference) error { diffs = append(diffs, d); return nil },
	})
	if err != nil {
		t.Fatalf("verify.Run: %v", err)
	}
	if sum.Differences != int64(len(diffs)) {
		t.Errorf("summary counts %d differences, Report got %d", sum.Differences, len(diffs))
	}
	return diffs, sum
}

func keysOf(diffs []verify.Difference) []diffKey {
	keys := make([]diffKey, len(diffs))
	for i, d := range diffs {
		keys[i] = diffKey{d.Path, string(d.Kind)}
	}
	return sortedKeys(keys)
}

func sortedKeys(keys []diffKey) []diffKey {
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Path != keys[j].Path {
			return keys[i].Path < keys[j].Path
		}
		return keys[i].Kind < keys[j].Kind
	})
	return keys
}

// treecmpKeys is the independent comparator's verdict in verify's terms: treecmp reports the
// entries below a path whose type changed one by one, verify only the type change.
func treecmpKeys(t *testing.T, src, dest string, exclude func(rel string) bool) []diffKey {
	t.Helper()
	diffs, err := treecmp.Compare(src, dest, treecmp.Options{SymlinkTimes: true, Exclude: exclude, Workers: 2})
	if err != nil {
		t.Fatalf("treecmp: %v", err)
	}
	var typeChanged []string
	for _, d := range diffs {
		if d.Kind == treecmp.Type {
			typeChanged = append(typeChanged, d.Path+"/")
		}
	}
	var keys []diffKey
	for _, d := range diffs {
		below := slices.ContainsFunc(typeChanged, func(p string) bool { return strings.HasPrefix(d.Path, p) })
		if !below {
			keys = append(keys, diffKey{d.Path, string(d.Kind)})
		}
	}
	return sortedKeys(keys)
}

func TestEqualTreesHaveNoDifference(t *testing.T) {
	for _, name := range treeNames {
		t.Run(name, func(t *testing.T) {
			src := sourceTree(t, name)
			dest := rsyncCopy(t, src)
			if keys := treecmpKeys(t, src, dest, nil); len(keys) > 0 {
				t.Fatalf("treecmp finds the rsync copy different: %v", keys)
			}
			for _, checksum := range []bool{false, true} {
				diffs, sum := runVerify(t, src, dest, checksum)
				if len(diffs) > 0 {
					t.Errorf("checksum=%v: differences on an equal pair: %v", checksum, diffs)
				}
				if sum.Entries < 200 || sum.Dirs < 10 || (checksum && sum.ContentBytes == 0) {
					t.Errorf("checksum=%v: compared too little: %+v", checksum, sum)
				}
				diffs, dsum := runDirs(t, src, dest, checksum)
				if len(diffs) > 0 {
					t.Errorf("checksum=%v: Dirs finds differences on an equal pair: %v", checksum, diffs)
				}
				if dsum.Entries != sum.Entries || dsum.Dirs != sum.Dirs || dsum.ContentBytes != sum.ContentBytes {
					t.Errorf("checksum=%v: Dirs over every directory compared %+v, Run %+v", checksum, dsum, sum)
				}
			}
		})
	}
}

// pick chooses the most hostile path of the tree for which ok is true: names that are not
// UTF-8 or hold a newline first, then the deepest, then the first in byte order.
func pick(t *testing.T, tree *treecmp.Tree, ok func(e *treecmp.Entry) bool) string {
	t.Helper()
	best, bestScore := "", -1
	for _, p := range slices.Sorted(maps.Keys(tree.Entries)) {
		e := tree.Entries[p]
		if p == "." || !ok(e) {
			continue
		}
		score := strings.Count(p, "/")
		if !utf8.ValidString(p) {
			score += 20
		}
		if strings.Contains(p, "\n") {
			score += 10
		}
		if score > bestScore {
			best, bestScore = p, score
		}
	}
	if best == "" {
		t.Fatal("the tree has no entry of the kind this case needs")
	}
	return best
}

func isFile(e *treecmp.Entry) bool         { return e.Type == 0 }
func isLoneFile(e *treecmp.Entry) bool     { return e.Type == 0 && e.LinkGroup == "" }
func isSymlink(e *treecmp.Entry) bool      { return e.Type == fs.ModeSymlink }
func isDir(e *treecmp.Entry) bool          { return e.Type == fs.ModeDir }
func isLoneNonEmpty(e *treecmp.Entry) bool { return isLoneFile(e) && e.Size > 0 }

// dirWithoutLinks picks directories whose subtree holds no hard-linked name, so removing or
// replacing them changes no grouping elsewhere.
func dirWithoutLinks(tree *treecmp.Tree) func(e *treecmp.Entry) bool {
	return func(e *treecmp.Entry) bool {
		if !isDir(e) {
			return false
		}
		for p, below := range tree.Entries {
			if strings.HasPrefix(p, e.Path+"/") && below.LinkGroup != "" {
				return false
			}
		}
		return true
	}
}

// keepParentTime runs change on dest/rel and puts back the mtime of rel's parent after it,
// so that a case plants exactly one difference.
func keepParentTime(t *testing.T, dest, rel string, change func(p string) error) {
	t.Helper()
	parent := filepath.Dir(filepath.Join(dest, rel))
	var st unix.Stat_t
	if err := unix.Lstat(parent, &st); err != nil {
		t.Fatal(err)
	}
	if err := change(filepath.Join(dest, rel)); err != nil {
		t.Fatalf("plant at %q: %v", rel, err)
	}
	restoreTimes(t, parent, &st)
}

func restoreTimes(t *testing.T, p string, st *unix.Stat_t) {
	t.Helper()
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("restore times of %q: %v", p, err)
	}
}

// withTimes runs change on the entry p and puts its own times back.
func withTimes(p string, change func() error) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// cloneMeta gives p the owner, mode and times of st (owner first: chown clears setuid).
func cloneMeta(p string, st *unix.Stat_t) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	now, err := lstat(p)
	if err != nil {
		return err
	}
	if now.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
			return err
		}
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

func lstat(p string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	return &st, unix.Lstat(p, &st)
}

func shiftMtime(p string, by time.Duration) error {
	st, err := lstat(p)
	if err != nil {
		return err
	}
	m := time.Unix(st.Mtim.Sec, st.Mtim.Nsec).Add(by)
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, unix.NsecToTimespec(m.UnixNano())}, unix.AT_SYMLINK_NOFOLLOW)
}

// plantCase is one difference planted in a copy: target picks the path in the source tree,
// prepare (optional) changes a private copy of the source before it is copied, plant
// changes the copy, and want lists the differences verify must report, exactly.
type plantCase struct {
	name     string
	root     bool // needs root (owners, device nodes)
	target   func(t *testing.T, tree *treecmp.Tree) string
	prepare  func(t *testing.T, src, rel string) string // returns the path planted at
	plant    func(t *testing.T, dest, rel string)
	want     func(rel string) []diffKey
	exclude  func(rel string) []string
	metaOnly bool // also run verify without --checksum and expect nothing
}

func one(kind string) func(rel string) []diffKey {
	return func(rel string) []diffKey { return []diffKey{{rel, kind}} }
}

func picker(ok func(e *treecmp.Entry) bool) func(t *testing.T, tree *treecmp.Tree) string {
	return func(t *testing.T, tree *treecmp.Tree) string { return pick(t, tree, ok) }
}

func plantCases() []plantCase {
	// changeEntry changes an entry in place and keeps its times.
	changeEntry := func(f func(p string) error) func(t *testing.T, dest, rel string) {
		return func(t *testing.T, dest, rel string) {
			p := filepath.Join(dest, rel)
			if err := withTimes(p, func() error { return f(p) }); err != nil {
				t.Fatalf("plant at %q: %v", rel, err)
			}
		}
	}
	// replace removes an entry and creates another in its place, keeping the parent's times.
	replace := func(create func(p string, old *unix.Stat_t) error) func(t *testing.T, dest, rel string) {
		return func(t *testing.T, dest, rel string) {
			keepParentTime(t, dest, rel, func(p string) error {
				old, err := lstat(p)
				if err != nil {
					return err
				}
				if err := os.RemoveAll(p); err != nil {
					return err
				}
				return create(p, old)
			})
		}
	}
	writeFile := func(p string, old *unix.Stat_t) error {
		if err := os.WriteFile(p, []byte("planted"), 0o644); err != nil {
			return err
		}
		return cloneMeta(p, old)
	}
	mkdir := func(p string, old *unix.Stat_t) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(p, "inside\nthe new dir"), nil, 0o644); err != nil {
			return err
		}
		return cloneMeta(p, old)
	}
	symlink := func(p string, old *unix.Stat_t) error {
		if err := os.Symlink("planted-target", p); err != nil {
			return err
		}
		return cloneMeta(p, old)
	}
	create := func(make func(p string) error) func(t *testing.T, dest, rel string) {
		return func(t *testing.T, dest, rel string) {
			keepParentTime(t, dest, rel, func(p string) error { return make(p) })
		}
	}
	// extraName is a new name, not UTF-8 and with a newline, in the deepest directory.
	extraName := func(name string) func(t *testing.T, tree *treecmp.Tree) string {
		return func(t *testing.T, tree *treecmp.Tree) string {
			return path.Join(pick(t, tree, isDir), name)
		}
	}
	return []plantCase{
		{name: "content same size", target: picker(isLoneNonEmpty), want: one("content"), metaOnly: true,
			plant: changeEntry(func(p string) error {
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					return err
				}
				defer f.Close()
				st, _ := f.Stat()
				b := make([]byte, 1)
				off := st.Size() / 2
				if _, err := f.ReadAt(b, off); err != nil {
					return err
				}
				b[0] ^= 0x40
				_, err = f.WriteAt(b, off)
				return err
			})},
		{name: "size", target: picker(isLoneFile), want: one("size"), plant: changeEntry(func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.Write([]byte("+"))
			return errorsJoin(err, f.Close())
		})},
		{name: "mode", target: picker(isLoneFile), want: one("mode"), plant: changeEntry(func(p string) error {
			st, err := lstat(p)
			if err != nil {
				return err
			}
			return unix.Chmod(p, (st.Mode&0o7777)^0o001)
		})},
		{name: "setuid", target: picker(func(e *treecmp.Entry) bool { return isLoneFile(e) && e.Perm&0o4000 == 0 }), want: one("mode"),
			plant: changeEntry(func(p string) error {
				st, err := lstat(p)
				if err != nil {
					return err
				}
				return unix.Chmod(p, st.Mode&0o7777|0o4000)
			})},
		{name: "uid", root: true, target: picker(isLoneFile), want: one("uid"), plant: changeEntry(func(p string) error {
			st, err := lstat(p)
			if err != nil {
				return err
			}
			return unix.Lchown(p, int(st.Uid)+7, -1)
		})},
		{name: "gid", root: true, target: picker(isLoneFile), want: one("gid"), plant: changeEntry(func(p string) error {
			st, err := lstat(p)
			if err != nil {
				return err
			}
			return unix.Lchown(p, -1, int(st.Gid)+7)
		})},
		{name: "file mtime", target: picker(isLoneFile), want: one("mtime"),
			plant: func(t *testing.T, dest, rel string) { must(t, shiftMtime(filepath.Join(dest, rel), time.Nanosecond)) }},
		{name: "directory mtime", target: picker(isDir), want: one("mtime"),
			plant: func(t *testing.T, dest, rel string) { must(t, shiftMtime(filepath.Join(dest, rel), -time.Second)) }},
		{name: "root mtime", target: func(*testing.T, *treecmp.Tree) string { return "." }, want: one("mtime"),
			plant: func(t *testing.T, dest, rel string) { must(t, shiftMtime(dest, time.Microsecond)) }},
		{name: "symlink target", target: picker(isSymlink), want: one("target"), plant: replace(func(p string, old *unix.Stat_t) error {
			if err := os.Symlink("planted\xff\ntarget", p); err != nil {
				return err
			}
			return cloneMeta(p, old)
		})},
		{name: "symlink mtime", target: picker(isSymlink), want: one("mtime"),
			plant: func(t *testing.T, dest, rel string) { must(t, shiftMtime(filepath.Join(dest, rel), time.Second)) }},
		{name: "file to directory", target: picker(isLoneFile), want: one("type"), plant: replace(mkdir)},
		{name: "directory to file", target: func(t *testing.T, tree *treecmp.Tree) string { return pick(t, tree, dirWithoutLinks(tree)) },
			want: one("type"), plant: replace(writeFile)},
		{name: "file to symlink", target: picker(isLoneFile), want: one("type"), plant: replace(symlink)},
		{name: "symlink to directory", target: picker(isSymlink), want: one("type"), plant: replace(mkdir)},
		{name: "fifo to file", target: picker(func(e *treecmp.Entry) bool { return e.Type == fs.ModeNamedPipe && e.LinkGroup == "" }),
			want: one("type"), plant: replace(writeFile)},
		{name: "missing file", target: picker(isLoneFile), want: one("missing"), plant: replace(func(string, *unix.Stat_t) error { return nil })},
		{name: "missing directory", target: func(t *testing.T, tree *treecmp.Tree) string { return pick(t, tree, dirWithoutLinks(tree)) },
			want: one("missing"), plant: replace(func(string, *unix.Stat_t) error { return nil })},
		{name: "extra file", target: extraName("extra\xfe\nfile"), want: one("extra"),
			plant: create(func(p string) error { return os.WriteFile(p, []byte("x"), 0o600) })},
		{name: "extra directory", target: extraName("-extra dir\n"), want: one("extra"), plant: create(func(p string) error {
			if err := os.MkdirAll(filepath.Join(p, "sub", "deeper"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(p, "sub", "file"), []byte("x"), 0o644)
		})},
		{name: "extra below an excluded name", target: extraName("cache.krsync-excluded"), exclude: func(string) []string { return []string{"*.krsync-excluded"} },
			want: func(string) []diffKey { return nil }, plant: create(func(p string) error {
				if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(p, "sub", "extra"), []byte("x"), 0o644)
			})},
		{name: "extra below an excluded path", target: extraName("kept-out"), exclude: func(rel string) []string { return []string{escapeGlob(rel)} },
			want: func(string) []diffKey { return nil }, plant: create(func(p string) error { return os.WriteFile(p, []byte("x"), 0o644) })},
		{name: "hard link broken", target: func(t *testing.T, tree *treecmp.Tree) string {
			// A name that is not the smallest of its group: its group keeps its name.
			return pick(t, tree, func(e *treecmp.Entry) bool { return isFile(e) && e.LinkGroup != "" && e.LinkGroup != e.Path })
		}, want: one("hardlink"), plant: breakLink},
		{name: "hard link added", target: picker(isLoneNonEmpty),
			prepare: func(t *testing.T, src, rel string) string {
				// A twin of rel (same bytes and metadata) in the source, then linked to rel
				// in the copy: rel and its twin are grouped in the copy only.
				twin := rel + "-twin\n"
				data, err := os.ReadFile(filepath.Join(src, rel))
				must(t, err)
				st, err := lstat(filepath.Join(src, rel))
				must(t, err)
				must(t, os.WriteFile(filepath.Join(src, twin), data, 0o600))
				must(t, cloneMeta(filepath.Join(src, twin), st))
				return rel
			},
			plant: func(t *testing.T, dest, rel string) {
				keepParentTime(t, dest, rel+"-twin\n", func(p string) error {
					if err := os.Remove(p); err != nil {
						return err
					}
					return os.Link(filepath.Join(dest, rel), p)
				})
			},
			want: func(rel string) []diffKey {
				return sortedKeys([]diffKey{{rel, "hardlink"}, {rel + "-twin\n", "hardlink"}})
			}},
		{name: "device rdev", root: true, target: picker(isDir),
			prepare: func(t *testing.T, src, rel string) string {
				dev := path.Join(rel, "dev\xff\nnode")
				must(t, unix.Mknod(filepath.Join(src, dev), unix.S_IFCHR|0o640, int(unix.Mkdev(1, 3))))
				// Another second than the copy's: see the parent's mtime below.
				must(t, os.Chtimes(filepath.Join(src, dev), time.Unix(1e9, 0), time.Unix(1e9, 5)))
				return dev
			},
			plant: replace(func(p string, old *unix.Stat_t) error {
				if err := unix.Mknod(p, unix.S_IFCHR|0o640, int(unix.Mkdev(1, 5))); err != nil {
					return err
				}
				return cloneMeta(p, old)
			}),
			want: one("rdev")},
	}
}

// escapeGlob quotes the bytes a glob pattern would read as wildcards.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[]\\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func TestPlantedDifferences(t *testing.T) {
	for _, name := range treeNames {
		for _, tc := range plantCases() {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				if tc.root && os.Geteuid() != 0 {
					testbin.SkipOrFail(t, "planting owners and device nodes needs root")
				}
				src := sourceTree(t, name)
				tree, err := treecmp.Scan(src, treecmp.Options{SkipContent: true})
				must(t, err)
				rel := tc.target(t, tree)
				if tc.prepare != nil {
					src = rsyncCopy(t, src)
					rel = tc.prepare(t, src, rel)
					// rsync 3.5 leaves a directory's mtime alone when it differs from the
					// copy's only below the second, as the prepared parent's would (verify
					// and treecmp both see that): move it to another second.
					parent := filepath.Join(src, path.Dir(rel))
					must(t, os.Chtimes(parent, time.Unix(1e9, 0), time.Unix(1e9, 123456789)))
				}
				var exclude []string
				if tc.exclude != nil {
					exclude = tc.exclude(rel)
				}
				dest := rsyncCopy(t, src)
				tc.plant(t, dest, rel)
				want := sortedKeys(tc.want(rel))
				diffs, _ := runVerify(t, src, dest, true, exclude...)
				if got := keysOf(diffs); !slices.Equal(got, want) {
					t.Errorf("planted at %q: verify reports %v, want %v\n%v", rel, got, want, diffs)
				}
				if diffs, _ := runDirs(t, src, dest, true, exclude...); !slices.Equal(keysOf(diffs), want) {
					t.Errorf("planted at %q: Dirs, one call per directory, reports %v, want %v\n%v", rel, keysOf(diffs), want, diffs)
				}
				var excludeFunc func(string) bool
				if len(exclude) > 0 {
					// path.Match is close enough to fnmatch for these patterns.
					excludeFunc = func(rel string) bool {
						for _, p := range exclude {
							if ok, _ := path.Match(p, path.Base(rel)); ok && !strings.Contains(p, "/") {
								return true
							}
							if ok, _ := path.Match(p, rel); ok {
								return true
							}
						}
						return false
					}
				}
				if got := treecmpKeys(t, src, dest, excludeFunc); !slices.Equal(got, want) {
					t.Errorf("planted at %q: treecmp reports %v, verify's expectation is %v", rel, got, want)
				}
				if tc.metaOnly {
					if diffs, _ := runVerify(t, src, dest, false); len(diffs) > 0 {
						t.Errorf("without --checksum a same-size content change is invisible, got %v", diffs)
					}
				}
			})
		}
	}
}

// breakLink gives dest/rel a new inode with the same bytes and metadata: only the grouping
// changes.
func breakLink(t *testing.T, dest, rel string) {
	t.Helper()
	keepParentTime(t, dest, rel, func(p string) error {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		old, err := lstat(p)
		if err != nil {
			return err
		}
		tmp := p + ".new"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		if err := cloneMeta(tmp, old); err != nil {
			return err
		}
		return os.Rename(tmp, p)
	})
}

// deepChain makes, below root, directories whose relative path is longer than PATH_MAX
// (4096), and a file at the bottom, with fixed mtimes, working from directory descriptors as
// nothing else can reach them. It returns the relative path of the file.
func deepChain(t *testing.T, root string, content string) string {
	t.Helper()
	name := strings.Repeat("d", 200)
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	var rel []string
	stamp := []unix.Timespec{unix.NsecToTimespec(1e18), unix.NsecToTimespec(1e18 + 7)}
	var fds []int
	for range 25 {
		must(t, unix.Mkdirat(fd, name, 0o755))
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		fds = append(fds, fd)
		fd = next
		rel = append(rel, name)
	}
	f, err := unix.Openat(fd, "bottom\nfile", unix.O_WRONLY|unix.O_CREAT, 0o644)
	must(t, err)
	_, err = unix.Write(f, []byte(content))
	must(t, err)
	unix.Close(f)
	must(t, unix.UtimesNanoAt(fd, "bottom\nfile", stamp, 0))
	// Directory times last, from the bottom up (each entry made changes its parent's).
	fds = append(fds, fd)
	for i := len(fds) - 1; i > 0; i-- {
		must(t, unix.UtimesNanoAt(fds[i-1], name, stamp, unix.AT_SYMLINK_NOFOLLOW))
		unix.Close(fds[i])
	}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, root, stamp, 0))
	unix.Close(fds[0])
	return strings.Join(append(rel, "bottom\nfile"), "/")
}

func TestPathsLongerThanPathMax(t *testing.T) {
	src, dest := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dest")
	must(t, os.Mkdir(src, 0o755))
	must(t, os.Mkdir(dest, 0o755))
	rel := deepChain(t, src, "same size A")
	if deepChain(t, dest, "same size B") != rel || len(rel) < 4096 {
		t.Fatalf("the chain is %d bytes long", len(rel))
	}
	diffs, sum := runVerify(t, src, dest, true)
	if got, want := keysOf(diffs), []diffKey{{rel, "content"}}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", diffs, want)
	}
	if sum.Dirs != 26 {
		t.Errorf("compared %d directories, want 26", sum.Dirs)
	}
}
