package rsyncexec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestValidateArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		refused string // substring of the refused option; "" means accepted
	}{
		{"defaults", DefaultArgs, ""},
		{"archive bundle", []string{"-aHAXS"}, ""},
		{"sparse acls xattrs compress", []string{"-S", "-A", "-X", "-z"}, ""},
		{"bwlimit and checksum", []string{"--bwlimit=10M", "--checksum", "--bwlimit", "5M"}, ""},
		{"no-recursive is fine", []string{"-a", "--no-r", "--no-recursive"}, ""},
		{"exclude rules pass", []string{"--exclude=*.o", "--include", "*.c", "--filter=- *.tmp", "-f", "+ keep"}, ""},
		{"short option with value in bundle", []string{"-f- *.o", "-B", "4096", "-@1"}, ""},
		{"value that looks refused", []string{"--suffix", "--delete", "--exclude=-r"}, ""},
		{"human readable", []string{"-avh", "--info=progress2"}, ""},
		{"chmod with r", []string{"--chmod=Dg+r"}, ""},
		{"max-delete is not a deletion", []string{"--max-delete=5", "--partial", "--inplace"}, ""},
		// krsync's own temporary directory is the only thing it makes in the destination.
		{"temp-dir", []string{"--temp-dir=/tmp"}, "--temp-dir"},
		{"temp-dir with a separate value", []string{"--temp-dir", "/tmp"}, "--temp-dir"},
		{"-T in a bundle", []string{"-aT/tmp"}, "-aT/tmp"},
		{"-T alone", []string{"-T", "/tmp"}, "-T"},
		{"partial-dir", []string{"--partial-dir=.rsync-partial"}, "--partial-dir"},
		{"delay-updates", []string{"--delay-updates"}, "--delay-updates"},
		{"delete", []string{"--delete"}, "--delete"},
		{"delete-during", []string{"--delete-during"}, "--delete-during"},
		{"old-dirs", []string{"--old-d"}, "--old-d"},
		{"del", []string{"-a", "--del"}, "--del"},
		{"delete-after", []string{"--delete-after"}, "--delete-after"},
		{"delete-excluded", []string{"--delete-excluded"}, "--delete-excluded"},
		{"delete-missing-args", []string{"--delete-missing-args"}, "--delete-missing-args"},
		{"recursive", []string{"--recursive"}, "--recursive"},
		{"r alone", []string{"-r"}, "-r"},
		{"r in a bundle", []string{"-rlptgoD"}, "-rlptgoD"},
		{"r late in a bundle", []string{"-avzr"}, "-avzr"},
		{"r after a value letter is a value", []string{"-Br"}, ""},
		{"remove-source-files", []string{"--remove-source-files"}, "--remove-source-files"},
		{"files-from", []string{"--files-from=x"}, "--files-from"},
		{"files-from separate value", []string{"--files-from", "x"}, "--files-from"},
		{"from0", []string{"--from0"}, "--from0"},
		{"0 in a bundle", []string{"-a0"}, "-a0"},
		{"no-from0", []string{"--no-from0"}, "--no-from0"},
		{"no-relative", []string{"--no-relative"}, "--no-relative"},
		{"no-R", []string{"--no-R"}, "--no-R"},
		{"no-dirs", []string{"--no-d"}, "--no-d"},
		{"exclude-from", []string{"--exclude-from=ex.txt"}, "--exclude-from"},
		{"include-from", []string{"--include-from", "in.txt"}, "--include-from"},
		{"merge filter", []string{"--filter=merge /etc/rules"}, "--filter"},
		{"dir-merge filter", []string{"--filter", "dir-merge .gitignore"}, "--filter"},
		{"short merge filter", []string{"-f", ". rules"}, "-f"},
		{"short dir-merge shorthand", []string{"-f:- .gitignore"}, "-f"},
		{"F", []string{"-aF"}, "-aF"},
		{"dry-run", []string{"--dry-run"}, "--dry-run"},
		{"n in a bundle", []string{"-avn"}, "-avn"},
		{"list-only", []string{"--list-only"}, "--list-only"},
		{"server", []string{"--server"}, "--server"},
		{"daemon", []string{"--daemon"}, "--daemon"},
		{"rsh", []string{"--rsh=ssh"}, "--rsh"},
		{"e", []string{"-e", "ssh"}, "-e"},
		{"rsync-path", []string{"--rsync-path=/bin/rsync"}, "--rsync-path"},
		{"port", []string{"--port=873"}, "--port"},
		{"write-batch", []string{"--write-batch=b"}, "--write-batch"},
		{"keep-dirlinks", []string{"-K"}, "-K"},
		{"version", []string{"--version"}, "--version"},
		{"quiet", []string{"-aq"}, "-aq"},
		{"quiet long", []string{"--quiet"}, "--quiet"},
		{"a path", []string{"-a", "/data"}, "/data"},
		{"double dash", []string{"--", "x"}, "--"},
		{"value missing", []string{"--bwlimit"}, "--bwlimit"},
		{"short value missing", []string{"-B"}, "-B"},
		{"unknown option passes to rsync", []string{"--no-such-option"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateArgs(tt.args)
			if tt.refused == "" {
				if err != nil {
					t.Fatalf("ValidateArgs(%q) = %v, want accepted", tt.args, err)
				}
				return
			}
			var optErr *OptionError
			if !errors.As(err, &optErr) {
				t.Fatalf("ValidateArgs(%q) = %v, want an *OptionError", tt.args, err)
			}
			if !strings.Contains(optErr.Option, tt.refused) || optErr.Reason == "" {
				t.Errorf("refused %q (%s), want %q with a reason", optErr.Option, optErr.Reason, tt.refused)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{"empty means defaults", "  ", nil, false},
		{"simple", "-aH --numeric-ids", []string{"-aH", "--numeric-ids"}, false},
		{"quotes", `--filter='- *.o' --chmod="Dg+s" -H`, []string{"--filter=- *.o", "--chmod=Dg+s", "-H"}, false},
		{"backslash", `--exclude=a\ b --hard-links`, []string{"--exclude=a b", "--hard-links"}, false},
		// Hard links are kept unless the user says otherwise.
		{"the chart's options keep hard links", "--archive --compress-level=9 --numeric-ids", []string{"--archive", "--compress-level=9", "--numeric-ids", "--hard-links"}, false},
		{"H in a bundle", "-avHz", []string{"-avHz"}, false},
		{"no-hard-links", "-a --no-hard-links", []string{"-a", "--no-hard-links"}, false},
		{"no-H", "-a --no-H", []string{"-a", "--no-H"}, false},
		{"H as a filter's value is not -H", "-a -f '- H'", []string{"-a", "-f", "- H", "--hard-links"}, false},
		{"H as the rest of a valued bundle is not -H", "-a -fH", []string{"-a", "-fH", "--hard-links"}, false},
		{"unterminated quote", `--exclude='x`, nil, true},
		{"refused", "-a --delete", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgs(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseArgs(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseArgs(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestWantsHumanNumbers(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{DefaultArgs, false},
		{[]string{"-avh"}, true},
		{[]string{"--human-readable"}, true},
		{[]string{"-h", "--no-h"}, false},
		{[]string{"-T", "-h"}, false}, // -h is -T's value here
		{[]string{"--suffix", "-h"}, false},
		{[]string{"-fh"}, false}, // a filter rule "h"
	}
	for _, tt := range tests {
		if got := wantsHumanNumbers(tt.args); got != tt.want {
			t.Errorf("wantsHumanNumbers(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := LookPath("")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "rsync not found in PATH: install rsync") {
		t.Errorf("LookPath with an empty PATH = %v", err)
	}
	_, err = LookPath("/no/such/rsync")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/no/such/rsync") {
		t.Errorf("LookPath(/no/such/rsync) = %v", err)
	}
	fake := writeScript(t, "exit 0")
	if got, err := LookPath(fake); err != nil || got != fake {
		t.Errorf("LookPath(%s) = %q, %v", fake, got, err)
	}
}

// FuzzParseArgs: any --rsync-opts string is either refused with one line or accepted with
// hard links said one way or the other, and never with an option krsync must refuse
// standing alone as an argument.
func FuzzParseArgs(f *testing.F) {
	for _, seed := range []string{
		"--archive --compress-level=9 --numeric-ids", "-avHz", "-a --no-H", "-a -f '- H'", "-aT/tmp",
		"--temp-dir /x", "--delay-updates", "--partial-dir=.p", "-a --delete", `--exclude='a b' -r`, "'",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := ParseArgs(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(s, "\n") {
				t.Fatalf("ParseArgs(%q): error is not one line: %q", s, err)
			}
			return
		}
		if args == nil {
			return
		}
		if said, _ := lastSwitch(args, 'H', "hard-links"); !said {
			t.Fatalf("ParseArgs(%q) = %q: hard links dropped silently", s, args)
		}
		if err := ValidateArgs(args); err != nil {
			t.Fatalf("ParseArgs(%q) = %q, which ValidateArgs refuses: %v", s, args, err)
		}
		for i, a := range args {
			switch a {
			case "--delete", "--temp-dir", "--delay-updates", "--partial-dir", "--recursive", "-r", "-T":
				if i == 0 || !takesValue(args[i-1]) {
					t.Fatalf("ParseArgs(%q) = %q: %s accepted", s, args, a)
				}
			}
		}
	})
}

// takesValue says whether arg is an option whose value is the next argument.
func takesValue(arg string) bool {
	if name, ok := strings.CutPrefix(arg, "--"); ok {
		return longWithValue[name]
	}
	return len(arg) > 1 && arg[0] == '-' && strings.IndexByte(shortWithValue, arg[len(arg)-1]) >= 0
}
