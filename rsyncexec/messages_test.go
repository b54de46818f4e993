package rsyncexec

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name  string
		line  string
		want  Message
		ok    bool
		roots []string
		rel   string
	}{
		{
			name: "send_files 3.2", line: `rsync: [sender] send_files failed to open "/src/a b/x": Permission denied (13)`,
			want: Message{Path: "/src/a b/x", Op: "send_files failed to open", Errno: 13}, ok: true,
			roots: []string{"/src"}, rel: "a b/x",
		},
		{
			name: "send_files 3.1 without role", line: `rsync: send_files failed to open "/src/x": Permission denied (13)`,
			want: Message{Path: "/src/x", Op: "send_files failed to open", Errno: 13}, ok: true,
		},
		{
			name: "link_stat ENOENT is a vanished file", line: `rsync: [sender] link_stat "/src/gone" failed: No such file or directory (2)`,
			want: Message{Path: "/src/gone", Op: "link_stat", Errno: 2, Vanished: true}, ok: true,
			roots: []string{"/src/"}, rel: "gone",
		},
		{
			name: "link_stat EACCES is not", line: `rsync: [sender] link_stat "/src/d/f" failed: Permission denied (13)`,
			want: Message{Path: "/src/d/f", Op: "link_stat", Errno: 13}, ok: true,
		},
		{
			name: "readlink_stat", line: `rsync: readlink_stat("/src/l") failed: Input/output error (5)`,
			want: Message{Path: "/src/l", Op: "readlink_stat", Errno: 5}, ok: true,
		},
		{
			name: "mkdir", line: `rsync: [generator] recv_generator: mkdir "/dst/d" failed: No space left on device (28)`,
			want: Message{Path: "/dst/d", Op: "recv_generator: mkdir", Errno: 28}, ok: true,
			roots: []string{"/src", "/dst"}, rel: "d",
		},
		{
			name: "vanished", line: `file has vanished: "/src/tmp/x"`,
			want: Message{Path: "/src/tmp/x", Op: "vanished", Vanished: true}, ok: true,
		},
		{
			name: "escaped newline and quote in the name", line: `rsync: [sender] send_files failed to open "/src/a\#012b"c": Permission denied (13)`,
			want: Message{Path: "/src/a\nb\"c", Op: "send_files failed to open", Errno: 13}, ok: true,
		},
		{
			name: "invalid UTF-8 escaped", line: `rsync: [sender] send_files failed to open "/src/\#377x": Permission denied (13)`,
			want: Message{Path: "/src/\xffx", Op: "send_files failed to open", Errno: 13}, ok: true,
		},
		{
			name: "rename names the final path", line: `rsync: [receiver] rename "/dst/.f.AbCdEf" -> "f": No space left on device (28)`,
			want: Message{Path: "f", Op: "rename", Errno: 28}, ok: true,
		},
		{
			name: "mkstemp temp name", line: `rsync: [receiver] mkstemp "/dst/d/.file.txt.XyZ123" failed: Permission denied (13)`,
			want: Message{Path: "/dst/d/.file.txt.XyZ123", Op: "mkstemp", Errno: 13}, ok: true,
			roots: []string{"/dst"}, rel: "d/file.txt",
		},
		{
			// The list's "./NAME" entries, should an rsync print them as given.
			name: "./ prefix", line: `rsync: [sender] link_stat "/src/./#top" failed: No such file or directory (2)`,
			want: Message{Path: "/src/./#top", Op: "link_stat", Errno: 2, Vanished: true}, ok: true,
			roots: []string{"/src"}, rel: "#top",
		},
		{
			name: "./ prefix, relative to the destination", line: `rsync: [receiver] recv_generator: mkdir "./;dir/x" failed: Permission denied (13)`,
			want: Message{Path: "./;dir/x", Op: "recv_generator: mkdir", Errno: 13}, ok: true,
			roots: []string{"/dst"}, rel: ";dir/x",
		},
		{name: "summary line", line: `rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [sender=3.5.0]`},
		{name: "no path", line: `rsync: connection unexpectedly closed (0 bytes received so far) [sender]`},
		{name: "not rsync", line: `hello "world"`},
		{name: "unterminated quote", line: `rsync: [sender] link_stat "/src/x failed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseMessage(tt.line)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("ParseMessage(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
			}
			if tt.rel != "" {
				if rel := got.Relative(tt.roots...); rel != tt.rel {
					t.Errorf("Relative(%q) = %q, want %q", tt.roots, rel, tt.rel)
				}
			}
		})
	}
}

func TestStderrReader(t *testing.T) {
	r := newStderrReader("/src", "/dst")
	for _, l := range []string{
		`rsync: [sender] link_stat "/src/gone" failed: No such file or directory (2)`,
		`rsync: [sender] send_files failed to open "/src/secret": Permission denied (13)`,
		`rsync: [sender] send_files failed to open "/src/secret": Permission denied (13)`,
		`rsync: [receiver] write failed on "/dst/big": No space left on device (28)`,
		`rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [sender=3.5.0]`,
		`rsync: [sender] change_dir "/src/" failed: No such file or directory (2)`,
		`rsync: [Receiver] mkdir "/dst" failed: No such file or directory (2)`,
	} {
		r.line(l)
	}
	if got := strings.Join(r.failed, "|"); got != "secret|big" {
		t.Errorf("failed = %q", got)
	}
	if got := strings.Join(r.vanished, "|"); got != "gone" {
		t.Errorf("vanished = %q", got)
	}
	if !r.noSpace {
		t.Error("noSpace not seen")
	}
	if got := r.lastMessage(); !strings.Contains(got, "mkdir") {
		t.Errorf("lastMessage = %q", got)
	}
	for i := 0; i < 100; i++ {
		r.line(fmt.Sprintf("line %d", i))
	}
	if len(r.tail) != stderrTailLines || r.tail[stderrTailLines-1] != "line 99" {
		t.Errorf("tail = %q", r.tail)
	}
	// Vanished paths are counted beyond the ones kept, each once.
	for i := 0; i < 2*maxFailedPaths; i++ {
		r.line(fmt.Sprintf(`rsync: [sender] link_stat "/src/./d/%d" failed: No such file or directory (2)`, i%(maxFailedPaths+500)))
	}
	if len(r.vanished) != maxFailedPaths || r.vanishedCount != maxFailedPaths+500+1 || r.vanished[1] != "d/0" {
		t.Errorf("vanished: kept %d, counted %d, second %q; want %d, %d, d/0", len(r.vanished), r.vanishedCount, r.vanished[1], maxFailedPaths, maxFailedPaths+501)
	}
}

// escapeLikeRsync escapes a name the way rsync prints it (log.c): bytes that are not
// printable ASCII, and a backslash before '#', become \#ooo.
func escapeLikeRsync(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x20 || c >= 0x7f || c == '\\' && i+1 < len(name) && name[i+1] == '#' {
			fmt.Fprintf(&b, `\#%03o`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// FuzzParseMessage checks that any line parses without a panic, and that any name rsync could
// print in its usual complaint comes back intact, relative to the root.
func FuzzParseMessage(f *testing.F) {
	for _, seed := range []string{"x", "a b/c", "-rf", "q\"uote", "new\nline", "back\\#134slash", "\xff\xfe", `": x (1)`} {
		f.Add(seed, `rsync: [sender] link_stat "/src/x" failed: Permission denied (13)`)
	}
	f.Fuzz(func(t *testing.T, name, line string) {
		if m, ok := ParseMessage(line); ok && m.Path == "" {
			t.Fatalf("ok with an empty path from %q", line)
		}
		if name == "" || strings.ContainsRune(name, 0) {
			return
		}
		// A leading "./" is the list's marker (cleanList), not part of a name: "/src/./0" is
		// the entry "0", as rsync prints the argument SRC/./0.
		want := name
		for strings.HasPrefix(want, "./") && len(want) > 2 {
			want = want[2:]
		}
		for _, format := range []string{
			`rsync: [sender] send_files failed to open "%s": Permission denied (13)`,
			`rsync: readlink_stat("%s") failed: Permission denied (13)`,
			`rsync: [generator] recv_generator: mkdir "%s" failed: No space left on device (28)`,
		} {
			line := fmt.Sprintf(format, escapeLikeRsync("/src/"+name))
			m, ok := ParseMessage(line)
			if !ok || m.Relative("/src") != want {
				t.Fatalf("name %q: line %q parsed as %+v (%v), relative %q", name, line, m, ok, m.Relative("/src"))
			}
		}
	})
}
