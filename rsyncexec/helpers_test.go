package rsyncexec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// writeScript writes an executable script (a test double standing in for rsync, or a wrapper
// around it) and returns its path.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake-rsync")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// entry describes one file of a test tree.
type entry struct {
	path    string      // relative, '/'-separated, any bytes
	mode    os.FileMode // permission bits plus os.ModeDir / os.ModeSymlink / os.ModeNamedPipe
	content string      // file content, or symlink target
	link    string      // for a hard link: the path it is a second name of
	uid     int         // owner; -1 leaves the creator's
	gid     int
	mtime   time.Time // zero: a fixed old time
}

var oldTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// makeTree creates entries under root, parents first; directory modes and all mtimes are
// applied at the end, deepest first, so writing children does not disturb them.
func makeTree(t *testing.T, root string, entries []entry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(root, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case e.link != "":
			err = os.Link(filepath.Join(root, e.link), p)
		case e.mode&os.ModeDir != 0:
			err = os.MkdirAll(p, 0o755)
		case e.mode&os.ModeSymlink != 0:
			err = os.Symlink(e.content, p)
		case e.mode&os.ModeNamedPipe != 0:
			err = syscall.Mkfifo(p, 0o644)
		default:
			err = os.WriteFile(p, []byte(e.content), 0o644)
		}
		if err != nil {
			t.Fatalf("make %q: %v", e.path, err)
		}
	}
	sorted := append([]entry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].path) > len(sorted[j].path) })
	for _, e := range sorted {
		if e.link != "" {
			continue
		}
		p := filepath.Join(root, e.path)
		if e.uid >= 0 || e.gid >= 0 {
			if err := os.Lchown(p, e.uid, e.gid); err != nil {
				t.Fatalf("chown %q: %v", e.path, err)
			}
		}
		mtime := e.mtime
		if mtime.IsZero() {
			mtime = oldTime
		}
		if e.mode&os.ModeSymlink == 0 {
			if err := os.Chmod(p, e.mode&(os.ModePerm|os.ModeSetgid|os.ModeSetuid|os.ModeSticky)); err != nil {
				t.Fatal(err)
			}
		}
		ts := []syscall.Timespec{syscall.NsecToTimespec(mtime.UnixNano()), syscall.NsecToTimespec(mtime.UnixNano())}
		if err := syscall.UtimesNano(p, ts); err != nil && e.mode&os.ModeSymlink == 0 {
			t.Fatal(err)
		}
		if e.mode&os.ModeSymlink != 0 {
			lutimes(t, p, mtime)
		}
	}
}

// lutimes sets a symlink's own mtime.
func lutimes(t *testing.T, p string, mtime time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("lutimes %q: %v", p, err)
	}
}

// fileInfo is what the comparator checks of one entry; it reads the tree with plain lstat and
// does not share code with rsyncexec.
type fileInfo struct {
	mode     uint32
	uid, gid uint32
	size     int64
	mtimeNs  int64
	target   string // symlink target
	content  string
	inode    uint64 // compared as a grouping, not as a number
}

// readTree lstat()s every entry under root, the root itself as ".".
func readTree(t *testing.T, root string) map[string]fileInfo {
	t.Helper()
	tree := map[string]fileInfo{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := info.Sys().(*syscall.Stat_t)
		fi := fileInfo{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtimeNs: st.Mtim.Nano(), inode: st.Ino}
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			fi.target, err = os.Readlink(p)
			fi.size = st.Size
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi.content, fi.size = string(b), st.Size
		}
		tree[rel] = fi
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// diffTrees lists the differences between src and dst for the given relative paths (all
// entries of both when paths is nil); inode grouping is compared across the paths.
func diffTrees(src, dst map[string]fileInfo, paths []string, checkDirTimes bool) []string {
	if paths == nil {
		seen := map[string]bool{}
		for p := range src {
			seen[p] = true
		}
		for p := range dst {
			seen[p] = true
		}
		for p := range seen {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var diffs []string
	srcGroup, dstGroup := map[uint64]string{}, map[uint64]string{}
	for _, p := range paths {
		s, sok := src[p]
		d, dok := dst[p]
		switch {
		case !sok:
			diffs = append(diffs, fmt.Sprintf("%q: only in destination", p))
			continue
		case !dok:
			diffs = append(diffs, fmt.Sprintf("%q: missing from destination", p))
			continue
		}
		isDir := s.mode&syscall.S_IFMT == syscall.S_IFDIR
		isLink := s.mode&syscall.S_IFMT == syscall.S_IFLNK
		if s.mode != d.mode {
			diffs = append(diffs, fmt.Sprintf("%q: mode %o, want %o", p, d.mode, s.mode))
		}
		if s.uid != d.uid || s.gid != d.gid {
			diffs = append(diffs, fmt.Sprintf("%q: owner %d:%d, want %d:%d", p, d.uid, d.gid, s.uid, s.gid))
		}
		if !isDir && s.size != d.size || s.content != d.content || s.target != d.target {
			diffs = append(diffs, fmt.Sprintf("%q: content/size/target differ", p))
		}
		if (!isDir || checkDirTimes) && !isLink && s.mtimeNs != d.mtimeNs {
			diffs = append(diffs, fmt.Sprintf("%q: mtime %s, want %s", p, time.Unix(0, d.mtimeNs).UTC().Format(time.RFC3339Nano), time.Unix(0, s.mtimeNs).UTC().Format(time.RFC3339Nano)))
		}
		if !isDir {
			// Two paths share an inode in the destination exactly when they do in the source.
			sFirst, sSeen := srcGroup[s.inode]
			dFirst, dSeen := dstGroup[d.inode]
			if sSeen != dSeen || sFirst != dFirst {
				diffs = append(diffs, fmt.Sprintf("%q: hard-link grouping differs (source with %q, destination with %q)", p, sFirst, dFirst))
			}
			if !sSeen {
				srcGroup[s.inode] = p
			}
			if !dSeen {
				dstGroup[d.inode] = p
			}
		}
	}
	return diffs
}

// list builds a NUL-terminated list.
func list(paths ...string) []byte {
	var b bytes.Buffer
	for _, p := range paths {
		b.WriteString(p)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// processesMentioning returns the pids whose command line contains s.
func processesMentioning(t *testing.T, s string) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(s)) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
				continue // a zombie is dead, only not reaped by its (re)parent yet
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listMode is one way Run hands a partition's entries to rsync.
type listMode struct {
	name        string
	maxArgBytes int  // Job.MaxArgBytes
	listDir     bool // Job.ListDir set
	asArgs      bool // the entries must be rsync arguments
}

// listModes are every way: the tests that copy hostile names run in each.
var listModes = []listMode{
	{name: "entries as arguments", asArgs: true},
	{name: "list on stdin", maxArgBytes: -1},
	{name: "list in a file", maxArgBytes: -1, listDir: true},
}

// apply sets the job's fields that select the mode.
func (m listMode) apply(t *testing.T, job Job) Job {
	t.Helper()
	job.MaxArgBytes = m.maxArgBytes
	if m.listDir {
		job.ListDir = t.TempDir()
	}
	return job
}

// check fails the test when rsync's command line does not match the mode.
func (m listMode) check(t *testing.T, argv []string) {
	t.Helper()
	if argv == nil {
		return // rsync did not run
	}
	if got := usesFilesFrom(argv); got == m.asArgs {
		t.Errorf("%s: rsync ran with --files-from %v: %q", m.name, got, argv[:min(len(argv), 12)])
	}
}

// usesFilesFrom says whether rsync was given its entries with --files-from.
func usesFilesFrom(argv []string) bool {
	for _, a := range argv {
		if strings.HasPrefix(a, "--files-from") {
			return true
		}
	}
	return false
}
