package rsyncexec

import (
	"path/filepath"
	"strconv"
	"strings"
)

// Bounds on what is kept of rsync's output.
const (
	maxLineBytes    = 64 << 10 // longer lines are cut
	stderrTailLines = 20
	maxFailedPaths  = 1000
)

// Message is one of rsync's complaints about one path, read from its stderr.
type Message struct {
	// Path is the path as rsync printed it, with its \#ooo escapes decoded. Use Relative for
	// the path relative to the source or destination root.
	Path string
	// Op is the operation that failed, e.g. "send_files failed to open", "link_stat", "mkdir".
	Op string
	// Errno is the error number rsync printed in parentheses, 0 when none.
	Errno int
	// Vanished is true for "file has vanished" and for a listed path whose lstat failed with
	// ENOENT: the file was deleted after the walk listed it.
	Vanished bool
}

// ParseMessage reads one line of rsync's stderr. ok is false for lines that name no path
// (summaries such as "rsync error: ... (code 23)", and anything unrecognised).
//
// rsync prints a failed path between double quotes (log.c, full_fname), escaping unprintable
// bytes and a backslash before '#' as \#ooo (octal), so a name holding newlines stays on one
// line; a name may still contain '"', so the closing quote is the last one followed by what
// rsync prints after a name (": ", " failed", " -> ", ")" or the end of the line).
func ParseMessage(line string) (m Message, ok bool) {
	line = strings.TrimRight(line, "\r\n")
	rest, isVanished := strings.CutPrefix(line, "file has vanished: ")
	if !isVanished {
		var found bool
		if rest, found = strings.CutPrefix(line, "rsync: "); !found {
			return Message{}, false
		}
		if strings.HasPrefix(rest, "[") { // rsync 3.2+: "[sender] ", "[receiver] ", "[generator] "
			if end := strings.Index(rest, "] "); end > 0 {
				rest = rest[end+2:]
			}
		}
	}
	start := strings.IndexByte(rest, '"')
	if start < 0 {
		return Message{}, false
	}
	op := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest[:start]), "("))
	quoted := rest[start+1:]
	// "rename "TMP" -> "NAME": the final name is the one that matters.
	if i := strings.Index(quoted, `" -> "`); i >= 0 {
		quoted = quoted[i+len(`" -> "`):]
	}
	end := closingQuote(quoted)
	if end < 0 {
		return Message{}, false
	}
	m = Message{Path: unescape(quoted[:end]), Op: op, Vanished: isVanished}
	if isVanished {
		m.Op = "vanished"
	}
	m.Errno = trailingErrno(quoted[end+1:])
	if m.Errno == 2 && (strings.HasPrefix(op, "link_stat") || strings.HasPrefix(op, "readlink_stat")) {
		m.Vanished = true // a listed path that is gone: the walk saw it, rsync did not
	}
	return m, m.Path != ""
}

// closingQuote finds the index of the quote that ends a path in s (s starts after the
// opening quote), or -1.
func closingQuote(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != '"' {
			continue
		}
		after := s[i+1:]
		if after == "" || strings.HasPrefix(after, ":") || strings.HasPrefix(after, " failed") ||
			strings.HasPrefix(after, ")") || strings.HasPrefix(after, " (") || strings.HasPrefix(after, " ->") ||
			strings.HasPrefix(after, " is ") || strings.HasPrefix(after, ",") {
			return i
		}
	}
	return -1
}

// trailingErrno reads the "(13)" at the end of "...: Permission denied (13)".
func trailingErrno(s string) int {
	s = strings.TrimSpace(s)
	if !strings.HasSuffix(s, ")") {
		return 0
	}
	open := strings.LastIndexByte(s, '(')
	if open < 0 {
		return 0
	}
	n, err := strconv.Atoi(s[open+1 : len(s)-1])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// unescape decodes rsync's \#ooo escapes (three octal digits) back into bytes.
func unescape(s string) string {
	if !strings.Contains(s, `\#`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 < len(s) && s[i+1] == '#' && isOctal(s[i+2]) && isOctal(s[i+3]) && isOctal(s[i+4]) {
			v := (int(s[i+2]-'0')<<6 | int(s[i+3]-'0')<<3 | int(s[i+4]-'0'))
			if v <= 0xff {
				b.WriteByte(byte(v))
				i += 4
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// Relative returns m.Path relative to whichever of roots contains it (rsync prints the
// sender's paths with the absolute source directory in front, the receiver's relative to the
// destination or absolute), with the temporary-file name of a failed mkstemp turned back into
// the real name. Paths outside every root are returned as printed.
func (m Message) Relative(roots ...string) string {
	p := m.Path
	for _, root := range roots {
		if root == "" {
			continue
		}
		root = strings.TrimSuffix(root, "/") + "/"
		if rel, ok := strings.CutPrefix(p, root); ok {
			p = rel
			break
		}
	}
	// The list's "./NAME" entries (see cleanList): rsync prints them without the "./" as far
	// as rsync 3.5 goes, but a path printed as given must still match the walk's name.
	for strings.HasPrefix(p, "./") && len(p) > 2 {
		p = p[2:]
	}
	if strings.HasPrefix(m.Op, "mkstemp") {
		p = realNameOfTemp(p)
	}
	return p
}

// realNameOfTemp turns rsync's temporary name "dir/.name.XXXXXX" back into "dir/name".
func realNameOfTemp(p string) string {
	dir, base := filepath.Split(p)
	if len(base) < 9 || base[0] != '.' || base[len(base)-7] != '.' {
		return p
	}
	return dir + base[1:len(base)-7]
}

// stderrReader consumes rsync's stderr line by line: it keeps the last lines, the failed and
// vanished paths, and whether the destination was full.
type stderrReader struct {
	roots         []string
	tail          []string
	failed        []string
	failedCount   int
	vanished      []string
	vanishedCount int
	otherErrors   int // "rsync: ..." complaints that are not about a vanished path
	noSpace       bool
	seenFailed    map[string]bool
	seenVanished  map[string]bool
}

func newStderrReader(roots ...string) *stderrReader {
	return &stderrReader{roots: roots, seenFailed: map[string]bool{}, seenVanished: map[string]bool{}}
}

// line reads one line of stderr.
func (r *stderrReader) line(line string) {
	if len(r.tail) == stderrTailLines {
		copy(r.tail, r.tail[1:])
		r.tail = r.tail[:stderrTailLines-1]
	}
	r.tail = append(r.tail, line)
	if strings.Contains(line, "No space left on device") || strings.Contains(line, "Disk quota exceeded") {
		r.noSpace = true
	}
	m, ok := ParseMessage(line)
	if !ok {
		if strings.HasPrefix(line, "rsync: ") {
			r.otherErrors++
		}
		return
	}
	rel := m.Relative(r.roots...)
	if r.isRoot(rel) {
		// The source or destination itself (change_dir, mkdir of the root): not a path of
		// the list; the exit code and the message say what went wrong.
		r.otherErrors++
		return
	}
	if m.Vanished {
		// Counted past the cap: the worker compares the count with the partition's size.
		// The set is as large as the list at most, which is in memory already.
		if !r.seenVanished[rel] {
			r.seenVanished[rel] = true
			r.vanishedCount++
			if len(r.vanished) < maxFailedPaths {
				r.vanished = append(r.vanished, rel)
			}
		}
		return
	}
	r.addFailed(rel)
}

// addFailed counts a complaint about rel and names rel among the failed paths once.
func (r *stderrReader) addFailed(rel string) {
	r.otherErrors++
	if r.seenFailed[rel] {
		return
	}
	r.seenFailed[rel] = true
	r.failedCount++
	if len(r.failed) < maxFailedPaths {
		r.failed = append(r.failed, rel)
	}
}

// isRoot says whether rel, as returned by Message.Relative, names a root itself.
func (r *stderrReader) isRoot(rel string) bool {
	if rel == "" || rel == "." || rel == "./" {
		return true
	}
	for _, root := range r.roots {
		if rel == root || rel == root+"/" {
			return true
		}
	}
	return false
}

// lastMessage is the last line worth showing a user: the last complaint before rsync's
// "rsync error: ... (code N) at main.c(...)" summary, or the summary itself.
func (r *stderrReader) lastMessage() string {
	for i := len(r.tail) - 1; i >= 0; i-- {
		l := strings.TrimSpace(r.tail[i])
		if l == "" || strings.HasPrefix(l, "rsync error: ") || strings.HasPrefix(l, "rsync warning: ") {
			continue
		}
		return l
	}
	for i := len(r.tail) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(r.tail[i]); l != "" {
			return l
		}
	}
	return ""
}
