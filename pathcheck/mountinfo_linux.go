package pathcheck

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// fsLocation is where a directory lies in its file system: the device (major:minor, as
// /proc/self/mountinfo names it) and its path from that file system's root. A bind mount
// shows one directory under two paths; both have the same fsLocation.
type fsLocation struct {
	dev, path string
}

// locate finds the mount that holds the resolved absolute path dir (the last mounted on the
// longest mount point that is dir or one of its parents) and returns dir's location in that
// mount's file system; ok is false when /proc/self/mountinfo cannot be read.
func locate(dir string) (loc fsLocation, ok bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fsLocation{}, false
	}
	defer f.Close()
	best := -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		root, point := unescape(fields[3]), unescape(fields[4])
		if !underByName(dir, point) || len(point) < best {
			continue
		}
		rel, err := filepath.Rel(point, dir)
		if err != nil {
			continue
		}
		best, loc = len(point), fsLocation{dev: fields[2], path: filepath.Join(root, rel)}
	}
	return loc, best >= 0 && sc.Err() == nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// underByName says whether path is dir or lies under it, by name only.
func underByName(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}
