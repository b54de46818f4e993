package verify

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/krsync/krsync/fpart"
)

func TestFnmatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		pathname   bool
		want       bool
	}{
		{"*.tmp", "a.tmp", false, true},
		{"*.tmp", ".tmp", false, false}, // FNM_PERIOD: '*' never matches a leading '.'
		{".*", ".hidden", false, true},
		{"?hidden", ".hidden", false, false},
		{"[.]hidden", ".hidden", false, false},
		{"a*b", "a\nb", false, true},
		{"*", "\xff\xfe", false, true},
		{"[!a]x", "bx", false, true},
		{"[^a]x", "ax", false, false},
		{"[]]", "]", false, true},
		{"[a-c]", "b", false, true},
		{"[a-c]", "d", false, false},
		{"[unterminated", "[unterminated", false, true},
		{`\*`, "*", false, true},
		{`\*`, "x", false, false},
		{"a/*", "a/b", true, true},
		{"a/*", "a/b/c", true, false}, // FNM_PATHNAME: '*' never matches '/'
		{"a/*", "a/.b", true, false},  // nor a '.' after '/'
		{"a?b", "a/b", true, false},
		{"a[/]b", "a/b", true, false},
		{"*/x", "dir/x", true, true},
		{"*/x", "d/e/x", true, false},
		{"*x*y*", "axbxcy", false, true},
		{"*x*y", "axbxcyz", false, false},
	}
	for _, tt := range tests {
		if got := fnmatch(tt.pattern, tt.s, tt.pathname); got != tt.want {
			t.Errorf("fnmatch(%q, %q, pathname=%v) = %v, want %v", tt.pattern, tt.s, tt.pathname, got, tt.want)
		}
	}
}

// TestExcludeAgreesWithFpart walks one tree with fpart -x and with verify's excluder: the
// entries each keeps must be the same, since krsync copies what fpart keeps.
func TestExcludeAgreesWithFpart(t *testing.T) {
	root := t.TempDir()
	for _, rel := range []string{
		"a.tmp", ".b.tmp", "keep", ".hidden/x", "sub/.dot/x", "sub/c.tmp/inner", "sub/keep",
		"[br]/x", "new\nline.tmp", "\xff.tmp", "deep/a/b/c", "deep/a/b/.c", "star*/x",
	} {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	patterns := [][]string{
		{"*.tmp"}, {".*"}, {"sub/*"}, {"sub/.*"}, {"*/b"}, {"deep/a/b"}, {"[[]br]"}, {`star\*`},
		// Not "*": fpart matches the root's own name too and keeps nothing; verify
		// never leaves the roots out.
		{"?"}, {"[!.]*.tmp"}, {root + "/sub/keep"}, {"new?line*", "x"},
	}
	for _, pats := range patterns {
		t.Run(strings.Join(pats, ","), func(t *testing.T) {
			var args []string
			for _, p := range pats {
				args = append(args, "-x", p)
			}
			opts, _, err := fpart.ParseArgs(append(args, "-zz", "-f", "1000", root))
			if err != nil {
				t.Fatal(err)
			}
			var byFpart []string
			_, err = fpart.Walk(context.Background(), root, opts, fpart.Handler{
				Partition: func(p fpart.Partition) error { byFpart = append(byFpart, p.Paths()...); return nil },
				Dir: func(rel string) error {
					if rel != "." {
						byFpart = append(byFpart, rel)
					}
					return nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			byFpart = dedupe(byFpart)
			x := newExcluder(pats, root)
			var byVerify []string
			var walk func(dir string)
			walk = func(dir string) {
				entries, err := os.ReadDir(filepath.Join(root, dir))
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range entries {
					rel := joinRel(dir, e.Name())
					if x.excluded(e.Name(), rel) {
						continue
					}
					byVerify = append(byVerify, rel)
					if e.IsDir() {
						walk(rel)
					}
				}
			}
			walk(".")
			byVerify = dedupe(byVerify)
			if !slices.Equal(byFpart, byVerify) {
				t.Errorf("fpart keeps %q\nverify keeps %q", byFpart, byVerify)
			}
		})
	}
}

func dedupe(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}
