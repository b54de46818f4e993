package treegen

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// hostileNames are file names that break shells, line-based lists, option parsers and
// UTF-8 decoders. None contains '/' or NUL, which no file name can.
func hostileNames() []string {
	return []string{
		"with space", " leading-space", "trailing-space ", "  ",
		"new\nline", "\nleading-newline", "trailing-newline\n", "tab\there", "\r carriage-return",
		"-leading-dash", "--delete", "-", "--", "-e ssh", "-rf",
		"invalid-\xff\xfe-utf8", "\xc3\x28", "\x80", "\xed\xa0\x80-surrogate",
		"star*", "question?", "[brackets]", "{braces}", "back\\slash", "single'quote", "double\"quote",
		"colon:name", "host:path", "rsync::module", "semi;colon", "$HOME", "`backtick`", "$(echo hi)",
		"pipe|name", "amp&name", "redirect>name", "less<name", "#hash", "~tilde", "%s%n%x",
		"unicodé", "e\u0301-nfd", "emoji-\U0001F980", "\x01control\x1f", "del\x7f",
		"...", ".hidden", "..hidden", "..\\..", "NUL-is-impossible-but-this-is-fine",
		strings.Repeat("L", 251) + ".txt", // 255 bytes, the longest name ext4 allows
		strings.Repeat("é", 127),          // 254 bytes of two-byte runes
	}
}

// hostileBuilder creates hostile/ one entry at a time; everything is sequential so the
// random streams stay deterministic.
type hostileBuilder struct {
	g      *generator
	r      *rand.Rand
	stream uint64
	isRoot bool
	skips  map[string]bool
}

func (g *generator) hostile() error {
	h := &hostileBuilder{g: g, r: g.rng(streamHostile), stream: streamHostile, isRoot: os.Geteuid() == 0, skips: map[string]bool{}}
	steps := []func() error{
		h.names, h.deepPaths, h.modes, h.owners, h.emptyDirs, h.zeroFiles,
		h.symlinks, h.hardLinks, h.sparse, h.specials, h.oddTimes,
	}
	if err := h.dir("hostile", 0o755, -1, -1); err != nil {
		return err
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	for note := range h.skips {
		g.sum.Notes = append(g.sum.Notes, note)
	}
	return nil
}

func (h *hostileBuilder) note(msg string) { h.skips[msg] = true }

func (h *hostileBuilder) path(rel string) string { return filepath.Join(h.g.root, rel) }

func (h *hostileBuilder) dir(rel string, mode os.FileMode, uid, gid int) error {
	if !h.isRoot {
		if uid >= 0 || gid >= 0 {
			h.note("owners other than the current user skipped: not running as root")
			uid, gid = -1, -1
		}
		if mode.Perm()&0o700 != 0o700 {
			h.note("directory modes without u+rwx skipped: not running as root")
			mode |= 0o700
		}
	}
	return h.g.mkdir(rel, mode, uid, gid, h.r)
}

// file writes a file of size bytes and sets owner, mode and times, in that order: a chown
// clears setuid/setgid, so the mode comes after it.
func (h *hostileBuilder) file(rel string, size int64, mode os.FileMode, uid, gid int) error {
	h.stream++
	path := h.path(rel)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, h.g.contentSource(h.stream), size); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	h.g.sum.Files++
	h.g.sum.Bytes += size
	return h.meta(path, mode, uid, gid, false)
}

// meta sets owner, mode (unless a symlink) and times of path.
func (h *hostileBuilder) meta(path string, mode os.FileMode, uid, gid int, symlink bool) error {
	if uid >= 0 || gid >= 0 {
		if h.isRoot {
			if err := os.Lchown(path, uid, gid); err != nil {
				return fmt.Errorf("chown %s: %w", path, err)
			}
		} else {
			h.note("owners other than the current user skipped: not running as root")
		}
	}
	if !symlink {
		if !h.isRoot && mode.Perm()&0o400 == 0 {
			h.note("file modes without u+r skipped: not running as root")
			mode |= 0o400
		}
		if err := unix.Chmod(path, unixMode(mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	return setTimes(path, timeFor(h.r), timeFor(h.r))
}

func (h *hostileBuilder) small() int64 { return h.r.Int64N(512) }

func (h *hostileBuilder) names() error {
	if err := h.dir("hostile/names", 0o755, -1, -1); err != nil {
		return err
	}
	for _, name := range hostileNames() {
		if err := h.file("hostile/names/"+name, 1+h.small(), 0o644, -1, -1); err != nil {
			return err
		}
	}
	// Directories with hostile names hold files too, so their names appear inside paths.
	for _, name := range []string{"dir with space", "dir\nwith newline", "-dash-dir", "\xff\xfe-dir", "dir\twith tab"} {
		dir := "hostile/names/" + name
		if err := h.dir(dir, 0o755, -1, -1); err != nil {
			return err
		}
		if err := h.file(dir+"/inner file", h.small(), 0o644, -1, -1); err != nil {
			return err
		}
		if err := h.file(dir+"/-inner\nfile", h.small(), 0o600, -1, -1); err != nil {
			return err
		}
	}
	return nil
}

// deepPaths makes relative paths far longer than 255 bytes (about 1,650 and 330 bytes)
// that stay well under PATH_MAX (4096) with any reasonable root.
func (h *hostileBuilder) deepPaths() error {
	long := "hostile/deep-long"
	if err := h.dir(long, 0o755, -1, -1); err != nil {
		return err
	}
	for i := 0; i < 8; i++ {
		long += fmt.Sprintf("/%03d-%s", i, strings.Repeat("x", 196))
		if err := h.dir(long, 0o755, -1, -1); err != nil {
			return err
		}
	}
	if err := h.file(long+"/leaf with space", 1000, 0o644, -1, -1); err != nil {
		return err
	}
	many := "hostile/deep-many"
	if err := h.dir(many, 0o755, -1, -1); err != nil {
		return err
	}
	for i := 0; i < 80; i++ {
		many += "/d"
		if err := h.dir(many, 0o755, -1, -1); err != nil {
			return err
		}
		if i%20 == 19 {
			if err := h.file(many+"/f", h.small(), 0o644, -1, -1); err != nil {
				return err
			}
		}
	}
	return h.file(many+"/leaf", h.small(), 0o644, -1, -1)
}

// modes makes a file for each of the 512 permission modes, files with setuid, setgid and
// sticky bits, and directories with a selection of modes (each holding a file).
func (h *hostileBuilder) modes() error {
	if err := h.dir("hostile/modes", 0o755, -1, -1); err != nil {
		return err
	}
	for m := 0; m <= 0o777; m++ {
		if err := h.file(fmt.Sprintf("hostile/modes/f%04o", m), h.r.Int64N(64), os.FileMode(m), -1, -1); err != nil {
			return err
		}
	}
	special := map[string]os.FileMode{
		"suid-4755":    os.ModeSetuid | 0o755,
		"sgid-2755":    os.ModeSetgid | 0o755,
		"both-6755":    os.ModeSetuid | os.ModeSetgid | 0o755,
		"sticky-1644":  os.ModeSticky | 0o644,
		"all-7777":     os.ModeSetuid | os.ModeSetgid | os.ModeSticky | 0o777,
		"suid-noexec":  os.ModeSetuid | 0o644,
		"sgid-noexec":  os.ModeSetgid | 0o640,
		"suid-foreign": os.ModeSetuid | 0o750,
	}
	for _, name := range sortedKeys(special) {
		uid, gid := -1, -1
		if name == "suid-foreign" {
			uid, gid = 1777, 1888
		}
		if err := h.file("hostile/modes/"+name, 10, special[name], uid, gid); err != nil {
			return err
		}
	}
	if err := h.dir("hostile/modes/dirs", 0o755, -1, -1); err != nil {
		return err
	}
	dirModes := []os.FileMode{
		0, 0o100, 0o300, 0o500, 0o555, 0o700, 0o711, 0o750, 0o755, 0o770, 0o777,
		os.ModeSticky | 0o777, os.ModeSetgid | 0o755, os.ModeSetgid | 0o775,
		os.ModeSetgid | os.ModeSticky | 0o777, os.ModeSetuid | os.ModeSetgid | os.ModeSticky | 0o777,
	}
	for i, m := range dirModes {
		dir := fmt.Sprintf("hostile/modes/dirs/d%02d-%s", i, modeName(m))
		if err := h.dir(dir, m, -1, -1); err != nil {
			return err
		}
		if err := h.file(dir+"/inside", h.small(), 0o644, -1, -1); err != nil {
			return err
		}
	}
	return nil
}

func modeName(m os.FileMode) string { return fmt.Sprintf("%04o", unixMode(m)) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// owners uses numeric ids that have no passwd entry, so only --numeric-ids keeps them.
func (h *hostileBuilder) owners() error {
	if err := h.dir("hostile/owners", 0o755, -1, -1); err != nil {
		return err
	}
	owners := [][2]int{{1000, 1000}, {65534, 65534}, {123456, 654321}, {0, 4242}, {4242, 0}, {2000000000, 7}}
	for _, o := range owners {
		name := fmt.Sprintf("hostile/owners/u%d-g%d", o[0], o[1])
		if err := h.file(name, h.small(), 0o640, o[0], o[1]); err != nil {
			return err
		}
	}
	if err := h.dir("hostile/owners/dir-u2000-g3000", 0o750, 2000, 3000); err != nil {
		return err
	}
	if err := h.file("hostile/owners/dir-u2000-g3000/file-u3000-g2000", h.small(), 0o600, 3000, 2000); err != nil {
		return err
	}
	return h.symlink("hostile/owners/link-u4321-g8765", "u1000-g1000", 4321, 8765)
}

func (h *hostileBuilder) emptyDirs() error {
	dirs := []struct {
		rel      string
		mode     os.FileMode
		uid, gid int
	}{
		{"hostile/empty", 0o755, -1, -1},
		{"hostile/empty/nested", 0o755, -1, -1},
		{"hostile/empty/nested/deeper", 0o700, -1, -1},
		{"hostile/empty-0000", 0, -1, -1},
		{"hostile/empty-sticky", os.ModeSticky | 0o777, -1, -1},
		{"hostile/empty-setgid", os.ModeSetgid | 0o750, 2000, 2001},
		{"hostile/empty with\nnewline", 0o755, -1, -1},
	}
	for _, d := range dirs {
		if err := h.dir(d.rel, d.mode, d.uid, d.gid); err != nil {
			return err
		}
	}
	return nil
}

func (h *hostileBuilder) zeroFiles() error {
	if err := h.dir("hostile/zero", 0o755, -1, -1); err != nil {
		return err
	}
	for i := 0; i < 5; i++ {
		if err := h.file(fmt.Sprintf("hostile/zero/empty-%d", i), 0, 0o644, -1, -1); err != nil {
			return err
		}
	}
	return nil
}

func (h *hostileBuilder) symlink(rel, target string, uid, gid int) error {
	path := h.path(rel)
	if err := os.Symlink(target, path); err != nil {
		return err
	}
	h.g.sum.Symlinks++
	return h.meta(path, 0, uid, gid, true)
}

func (h *hostileBuilder) symlinks() error {
	if err := h.dir("hostile/links", 0o755, -1, -1); err != nil {
		return err
	}
	absRoot, err := filepath.Abs(h.g.root)
	if err != nil {
		return err
	}
	links := []struct{ name, target string }{
		{"rel-file", "../names/with space"},
		{"rel-dir", "../deep-many/d/d"},
		{"abs-in-tree", filepath.Join(absRoot, "hostile/names/-leading-dash")},
		{"abs-outside", "/etc/hostname"},
		{"dangling", "does/not/exist"},
		{"out-of-tree", strings.Repeat("../", 12) + "outside-the-tree"},
		{"loop", "loop"},
		{"newline\nlink", "target with\nnewline"},
		{"-dash-link", "-dash-target"},
		{"empty-dir-link", "../empty"},
		{"invalid-\xff-link", "\xfe\xff-target"},
		{"long-target", strings.Repeat("a/", 600) + "end"},
		{"dot", "."},
		{"dotdot", ".."},
	}
	for _, l := range links {
		if err := h.symlink("hostile/links/"+l.name, l.target, -1, -1); err != nil {
			return err
		}
	}
	return nil
}

// hardLinks spreads the names of one inode over several directories (and hostile names).
func (h *hostileBuilder) hardLinks() error {
	for _, d := range []string{"hostile/hard", "hostile/hard/a", "hostile/hard/b", "hostile/hard/c", "hostile/hard/c/d"} {
		if err := h.dir(d, 0o755, -1, -1); err != nil {
			return err
		}
	}
	groups := []struct {
		orig     string
		size     int64
		mode     os.FileMode
		uid, gid int
		links    []string
	}{
		{"hostile/hard/a/orig", 3000, 0o644, -1, -1, []string{
			"hostile/hard/b/link-1", "hostile/hard/c/d/link 2", "hostile/hard/new\nline link",
			"hostile/names/hardlink-to-orig", "hostile/deep-many/d/d/d/hardlink",
		}},
		{"hostile/hard/a/empty-orig", 0, 0o600, -1, -1, []string{"hostile/hard/b/empty-link"}},
		{"hostile/hard/a/suid", 77, os.ModeSetuid | 0o755, 1500, 1500, []string{"hostile/hard/c/suid-link"}},
		{"hostile/hard/b/-dash", 10, 0o444, -1, -1, []string{"hostile/hard/c/d/-dash-link", "hostile/hard/a/--"}},
	}
	for _, grp := range groups {
		if err := h.file(grp.orig, grp.size, grp.mode, grp.uid, grp.gid); err != nil {
			return err
		}
		for _, l := range grp.links {
			if err := os.Link(h.path(grp.orig), h.path(l)); err != nil {
				return err
			}
			h.g.sum.Hardlink++
		}
	}
	return nil
}

// sparse writes a file with three 4 KiB data blocks and holes between them.
func (h *hostileBuilder) sparse() error {
	path := h.path("hostile/sparse.bin")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	size := h.g.spec.SparseSize
	block := make([]byte, 4096)
	h.stream++
	if _, err := io.ReadFull(h.g.contentSource(h.stream), block); err != nil {
		f.Close()
		return err
	}
	for _, off := range []int64{0, size / 2, size - int64(len(block))} {
		if _, err := f.WriteAt(block, max(off, 0)); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	h.g.sum.Files++
	h.g.sum.Bytes += size
	return h.meta(path, 0o644, -1, -1, false)
}

// specials makes FIFOs, a socket inode and, as root, a character device. rsync -a copies
// them because -a includes -D (--devices --specials).
func (h *hostileBuilder) specials() error {
	if err := h.dir("hostile/special", 0o755, -1, -1); err != nil {
		return err
	}
	nodes := []struct {
		name string
		mode uint32
		dev  int
		uid  int
	}{
		{"fifo", unix.S_IFIFO | 0o644, 0, -1},
		{"fifo with\nnewline", unix.S_IFIFO | 0o600, 0, 1234},
		{"socket", unix.S_IFSOCK | 0o755, 0, -1},
		{"char-1-3", unix.S_IFCHR | 0o666, int(unix.Mkdev(1, 3)), -1},
	}
	for _, n := range nodes {
		path := h.path("hostile/special/" + n.name)
		err := unix.Mknod(path, n.mode, n.dev)
		if n.mode&unix.S_IFMT == unix.S_IFCHR && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) {
			h.note("device node skipped: mknod refused (" + err.Error() + ")")
			continue
		}
		if err != nil {
			return fmt.Errorf("mknod %s: %w", path, err)
		}
		h.g.sum.Specials++
		if err := h.meta(path, os.FileMode(n.mode&0o777), n.uid, n.uid, false); err != nil {
			return err
		}
	}
	return nil
}

// oddTimes sets mtimes at the edges: just after the epoch, in the far future, a whole second.
func (h *hostileBuilder) oddTimes() error {
	if err := h.dir("hostile/times", 0o755, -1, -1); err != nil {
		return err
	}
	times := map[string]time.Time{
		"epoch-plus-1":   time.Unix(1, 0),
		"year-2100":      time.Date(2100, 1, 2, 3, 4, 5, 6, time.UTC),
		"whole-second":   time.Date(2020, 2, 29, 12, 0, 0, 0, time.UTC),
		"y2038-plus":     time.Unix(1<<31+5, 999999999),
		"one-nanosecond": time.Unix(1600000000, 1),
	}
	for _, name := range sortedKeys(times) {
		rel := "hostile/times/" + name
		if err := h.file(rel, h.small(), 0o644, -1, -1); err != nil {
			return err
		}
		if err := setTimes(h.path(rel), times[name], times[name]); err != nil {
			return err
		}
	}
	return nil
}
