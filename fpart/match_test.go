package fpart

import "testing"

// Expectations follow fnmatch(3) in the C locale (glibc), the function fpart calls.
func TestFnmatch(t *testing.T) {
	tests := []struct {
		pattern, s     string
		pathname, fold bool
		want           bool
	}{
		{".zfs", ".zfs", false, false, true},
		{".snapshot*", ".snapshot", false, false, true},
		{".snapshot*", ".snapshot-2024", false, false, true},
		{"*", ".hidden", false, false, false}, // FNM_PERIOD
		{"?hidden", ".hidden", false, false, false},
		{"[.]hidden", ".hidden", false, false, false},
		{"*.o", "a.o", false, false, true},
		{"*.o", "a.c", false, false, false},
		{"a?c", "abc", false, false, true},
		{"[a-c]x", "bx", false, false, true},
		{"[!a-c]x", "bx", false, false, false},
		{"[^a-c]x", "dx", false, false, true},
		{"[]]", "]", false, false, true},
		{"[", "[", false, false, true},
		{"[abc", "[abc", false, false, true},
		{`\*`, "*", false, false, true},
		{`\*`, "a", false, false, false},
		{"*.TMP", "x.tmp", false, true, true},
		{"*.TMP", "x.tmp", false, false, false},
		{"[A-C]", "b", false, true, true},
		{"t/*", "t/a", true, false, true},
		{"t/*", "t/a/b", true, false, false},
		{"t/*", "t/.zfs", true, false, false}, // FNM_PERIOD after '/'
		{"*/b", "t/a/b", true, false, false},
		{"*/*/b", "t/a/b", true, false, true},
		{"t?a", "t/a", true, false, false},
		{"t[/]a", "t/a", true, false, false},
		{"a*b*c", "axxbyyc", false, false, true},
		{"a*b*c", "axxbyy", false, false, false},
		{"*", "bad-\xff", false, false, true},
		{"\xff*", "\xff\xfe", false, false, true},
		{"", "", false, false, true},
		{"", "a", false, false, false},
		{"**", "", false, false, true},
	}
	for _, tt := range tests {
		if got := fnmatch(tt.pattern, tt.s, tt.pathname, tt.fold); got != tt.want {
			t.Errorf("fnmatch(%q, %q, pathname=%v, fold=%v) = %v, want %v", tt.pattern, tt.s, tt.pathname, tt.fold, got, tt.want)
		}
	}
}

func FuzzFnmatch(f *testing.F) {
	f.Add("*.o", "a.o", true)
	f.Add("[!a-]x*", "bx/.y", false)
	f.Fuzz(func(t *testing.T, pattern, s string, pathname bool) {
		fnmatch(pattern, s, pathname, !pathname) // must not panic or hang
		if !fnmatch(escape(s), s, false, false) && (len(s) == 0 || s[0] != '.') {
			t.Fatalf("escaped %q does not match itself", s)
		}
	})
}

// escape quotes every byte so the pattern matches s literally.
func escape(s string) string {
	out := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, '\\', s[i])
	}
	return string(out)
}

// TestFilterSkips: Filter judges an entry as the walk does: -x/-X by leaf name or by path
// (relative, or below the root as given), -y/-Y only for entries that are not directories.
func TestFilterSkips(t *testing.T) {
	if NewFilter(Options{}, "/src") != nil {
		t.Error("a filter without patterns is not nil")
	}
	var none *Filter
	if none.Skips("a", false) {
		t.Error("a nil filter skips")
	}
	f := NewFilter(Options{Exclude: []string{"*.keep", "/src/a/b"}, ExcludeFold: []string{"TMP"}, Include: []string{"*.txt"}}, "/src")
	tests := []struct {
		rel   string
		isDir bool
		want  bool
	}{
		{"x.keep", false, true},
		{"d/x.keep", true, true},
		{".x.keep", false, true}, // not excluded ('*' does not match a leading '.'), but not included
		{"a/b", true, true},      // a path pattern, against the root as given
		{"c/a/b", true, false},
		{"tmp", true, true}, // -X folds case
		{"notes.txt", false, false},
		{"notes.bin", false, true}, // not included
		{"dir", true, false},       // directories are always crawled
	}
	for _, tt := range tests {
		if got := f.Skips(tt.rel, tt.isDir); got != tt.want {
			t.Errorf("Skips(%q, dir=%v) = %v, want %v", tt.rel, tt.isDir, got, tt.want)
		}
	}
}
