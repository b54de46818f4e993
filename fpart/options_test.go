package fpart_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/krsync/krsync/fpart"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		want  fpart.Options
		paths []string
		err   string // substring of the error; "" for success
	}{
		{name: "files", args: []string{"-f", "1000", "dir"}, want: fpart.Options{MaxFiles: 1000}, paths: []string{"dir"}},
		{name: "attached value", args: []string{"-f1000", "-s10G"}, want: fpart.Options{MaxFiles: 1000, MaxBytes: 10 << 30}},
		{name: "size units", args: []string{"-s", "512M"}, want: fpart.Options{MaxBytes: 512 << 20}},
		{name: "size lower unit", args: []string{"-s", "3k"}, want: fpart.Options{MaxBytes: 3 << 10}},
		{name: "dir levels", args: []string{"-zz", "-z"}, want: fpart.Options{Dirs: fpart.DirsAll}},
		{name: "combined flags", args: []string{"-Lzzf", "5"}, want: fpart.Options{Live: true, Dirs: fpart.DirsUnreadable, MaxFiles: 5}},
		{name: "options after paths", args: []string{"a", "-n", "3", "b"}, want: fpart.Options{Parts: 3}, paths: []string{"a", "b"}},
		{name: "double dash", args: []string{"-f", "1", "--", "-x"}, want: fpart.Options{MaxFiles: 1}, paths: []string{"-x"}},
		{name: "patterns", args: []string{"-x", ".zfs", "-X", "*.TMP", "-y", "a/*", "-Y", "B"},
			want: fpart.Options{Exclude: []string{".zfs"}, ExcludeFold: []string{"*.TMP"}, Include: []string{"a/*"}, IncludeFold: []string{"B"}}},
		{name: "output", args: []string{"-0", "-e", "-o", "parts", "-b", "-E", "-D"},
			want: fpart.Options{NulTerminated: true, TrailingSlash: true, Output: "parts", OneFileSystem: true, DirsOnly: true, LeafDirs: true}},
		{name: "zero files", args: []string{"-f", "0"}, err: "-f"},
		{name: "negative", args: []string{"-s", "-5"}, err: "-s"},
		{name: "bad unit", args: []string{"-s", "5X"}, err: "unit"},
		{name: "missing value", args: []string{"-f"}, err: "needs a value"},
		{name: "unknown", args: []string{"-Q"}, err: "unknown option -Q"},
		{name: "long option", args: []string{"--files=3"}, err: "unknown option"},
		{name: "unsupported", args: []string{"-l"}, err: "symbolic links"},
		{name: "n with f", args: []string{"-n", "2", "-f", "3"}, err: "-n cannot"},
		{name: "n with L", args: []string{"-L", "-n", "2"}, err: "-n cannot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, paths, err := fpart.ParseArgs(tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, fpart.ErrUsage) {
					t.Fatalf("err = %v, want a usage error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(opts, tt.want) || !reflect.DeepEqual(paths, tt.paths) {
				t.Errorf("got %+v %q\nwant %+v %q", opts, paths, tt.want, tt.paths)
			}
		})
	}
}

func TestParseOptionString(t *testing.T) {
	opts, err := fpart.ParseOptionString("-zz -x .zfs -x .snapshot* -x .ckpt")
	if err != nil {
		t.Fatalf("the chart's default: %v", err)
	}
	want := fpart.Options{Dirs: fpart.DirsUnreadable, Exclude: []string{".zfs", ".snapshot*", ".ckpt"}}
	if !reflect.DeepEqual(opts, want) {
		t.Errorf("got %+v, want %+v", opts, want)
	}
	if err := opts.Validate(); err == nil {
		t.Error("Validate accepts options without -f, -s or -n")
	}
	opts.MaxFiles, opts.Live = 2000, true // what the coordinator adds
	if err := opts.Validate(); err != nil {
		t.Errorf("Validate after adding -f -L: %v", err)
	}
	quoted, err := fpart.ParseOptionString(`-x 'with space' -x "a\"b" -L -f 10`)
	if err != nil || !reflect.DeepEqual(quoted.Exclude, []string{"with space", `a"b`}) {
		t.Errorf("quoted patterns: %+v, %v", quoted.Exclude, err)
	}
	for _, bad := range []string{"-f 10 /source", "-o out -f 1", "-x 'unterminated", "-f 0", "-n 2 -L"} {
		if _, err := fpart.ParseOptionString(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseOptionString(%q) = %v, want a one-line error", bad, err)
		}
	}
}

func FuzzParseOptionString(f *testing.F) {
	for _, s := range []string{"-zz -x .zfs -x .snapshot* -x .ckpt", "-L -f 2000 -s 10G", "-n 7", "-f", "-s 1p", "-x 'a b' -Y \"c\"", "-Lzzzf3", "--", "-s 9999999999999P"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		opts, err := fpart.ParseOptionString(s)
		if err != nil {
			if !errors.Is(err, fpart.ErrUsage) {
				t.Fatalf("%q: error %v does not wrap ErrUsage", s, err)
			}
			return
		}
		if opts.MaxFiles < 0 || opts.MaxBytes < 0 || opts.Parts < 0 {
			t.Fatalf("%q: negative limits %+v", s, opts)
		}
		if opts.Parts > 0 && (opts.MaxFiles > 0 || opts.MaxBytes > 0 || opts.Live) {
			t.Fatalf("%q: -n accepted with -f/-s/-L", s)
		}
	})
}

func FuzzParseArgs(f *testing.F) {
	f.Add("-f\x001000\x00dir", "")
	f.Add("-zzz\x00-x\x00*.o\x00--\x00-x", "")
	f.Fuzz(func(t *testing.T, joined, extra string) {
		args := strings.Split(joined, "\x00")
		if extra != "" {
			args = append(args, extra)
		}
		opts, _, err := fpart.ParseArgs(args)
		if err != nil {
			return
		}
		_ = opts.Validate() // must not panic
	})
}
