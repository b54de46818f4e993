package fpart

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kballard/go-shellquote"
)

// DirMode is how many directories are packed as entries: fpart's -z, -zz and -zzz.
type DirMode int

// The directory modes of fpart(1), DIRECTORY HANDLING.
const (
	DirsNone       DirMode = iota // files only (fpart's default)
	DirsEmpty                     // -z: empty directories too
	DirsUnreadable                // -zz: and unreadable (or partly read) directories, as empty ones
	DirsAll                       // -zzz: every directory, as an empty entry
)

// Options are fpart's options, with fpart's meaning. The zero value has no partitioning
// mode: set one of MaxFiles, MaxBytes or Parts (the coordinator sets MaxFiles and Live
// when the user gave none).
type Options struct {
	MaxFiles int64 // -f: at most this many entries per partition
	MaxBytes int64 // -s: at most this many bytes per partition (live mode may exceed it by one entry)
	Parts    int   // -n: exactly this many partitions, balanced by size (never live)
	Live     bool  // -L: emit each partition as soon as it is full, while walking

	Dirs     DirMode // -z, -zz, -zzz
	LeafDirs bool    // -D: a directory holding files only is packed as one entry (implies -z)
	DirsOnly bool    // -E: pack directories only, each with the size of its own files (implies -D)

	Exclude     []string // -x: case-sensitive exclude patterns (leaf name, or path when it has a '/')
	ExcludeFold []string // -X: case-insensitive exclude patterns
	Include     []string // -y: case-sensitive include patterns (entries only; directories are always crawled)
	IncludeFold []string // -Y: case-insensitive include patterns

	OneFileSystem bool // -b: do not cross file system boundaries

	// Output options, used by fpart's output formats (Printer), not by Walk.
	NulTerminated bool   // -0: entries end with NUL in -o files
	TrailingSlash bool   // -e: directory entries end with '/'
	Output        string // -o: file template (PREFIX.N); "" or "-" is stdout

	// Readers bounds the concurrent directory reads; 0 picks a default.
	Readers int

	// Spread is krsync's, not an fpart option: in live mode with -f, a partition closes
	// once it holds max(MinSpreadFiles, entries packed before it / Spread) entries, when that
	// is below -f. The first partitions are small, so every worker gets work at once, and no
	// partition holds more than 1/Spread of what was walked before it, so the last ones do
	// not leave workers idle while one rsync finishes a big one (on slow storage one entry
	// costs a worker tens of milliseconds). 0 keeps fpart's fixed -f. The partitions still
	// depend only on the tree and the options.
	Spread int64
}

// MinSpreadFiles is the smallest partition Spread makes (unless -f is smaller): below it,
// starting rsync costs more than the entries it copies.
const MinSpreadFiles = 32

// ErrUsage marks errors caused by bad options or arguments (the CLI exits 2 on them).
var ErrUsage = errors.New("usage")

// usageErr is a one-line option error that wraps ErrUsage.
func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// unsupported explains the fpart options krsync refuses, so a user porting an fpsync
// command line learns what to change instead of getting a silently different result.
func unsupported(letter byte) (string, bool) {
	reason, ok := map[byte]string{
		'i': "reading a file list (-i) is not supported: give directories",
		'a': "arbitrary values (-a) are not supported: give directories",
		'l': "following symbolic links (-l) is not supported: symlinks are copied as links",
		'Z': "dedicated partitions for unreadable directories (-Z) are not supported",
		'd': "packing directories after a depth (-d) is not supported",
		'w': "hooks (-w) are not supported",
		'W': "hooks (-W) are not supported",
		'S': "skipping big files (-S) is not supported",
		'p': "preloading partitions (-p) is not supported",
		'q': "overloading file sizes (-q) is not supported",
		'r': "rounding file sizes (-r) is not supported",
		'h': "help (-h): see krsync partition -h",
		'V': "version (-V): see krsync version",
	}[letter]
	return reason, ok
}

// takesValue lists fpart's options that take an argument (getopt's "x:").
const takesValue = "nfsioyYxXdwWpqr"

// ParseArgs parses fpart's command line (getopt rules: -zz, -f1000, -f 1000, options
// after paths, "--" ends options) and returns the options and the remaining paths.
// It does not require a partitioning mode; Validate does.
func ParseArgs(args []string) (Options, []string, error) {
	var opts Options
	var paths []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			paths = append(paths, args[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			paths = append(paths, arg)
			continue
		}
		if strings.HasPrefix(arg, "--") {
			return Options{}, nil, usageErr("unknown option %q (fpart options are single letters, e.g. -f 1000)", arg)
		}
		for j := 1; j < len(arg); j++ {
			letter := arg[j]
			if !strings.ContainsRune(takesValue, rune(letter)) {
				if err := opts.setFlag(letter); err != nil {
					return Options{}, nil, err
				}
				continue
			}
			value := arg[j+1:]
			if value == "" {
				if i+1 >= len(args) {
					return Options{}, nil, usageErr("option -%c needs a value", letter)
				}
				i++
				value = args[i]
			}
			if err := opts.setValue(letter, value); err != nil {
				return Options{}, nil, err
			}
			break
		}
	}
	if err := opts.checkCombination(); err != nil {
		return Options{}, nil, err
	}
	return opts, paths, nil
}

// DefaultOptions are the options of a coordinator's walk in Kubernetes, the seed Helm chart's
// fpartOpts: empty and unreadable directories listed (-zz), ZFS and NetApp snapshot and
// checkpoint directories skipped. krsync manifests and the coordinator's flag default say it.
const DefaultOptions = "-zz -x .zfs -x .snapshot* -x .ckpt"

// ParseOptionString splits s as a shell would (quotes, backslashes; no expansion) and
// parses it as fpart options, e.g. the chart's "-zz -x .zfs -x .snapshot* -x .ckpt".
// Paths and -o are refused: the coordinator chooses the source and the output.
func ParseOptionString(s string) (Options, error) {
	words, err := shellquote.Split(s)
	if err != nil {
		return Options{}, usageErr("fpart options %q: %v", s, err)
	}
	opts, paths, err := ParseArgs(words)
	if err != nil {
		return Options{}, err
	}
	if len(paths) > 0 {
		return Options{}, usageErr("fpart options %q: unexpected path %q (the source is given separately)", s, paths[0])
	}
	if opts.Output != "" {
		return Options{}, usageErr("fpart options %q: -o is not used here (partitions go to the workers)", s)
	}
	return opts, nil
}

// setFlag applies one option that takes no value.
func (o *Options) setFlag(letter byte) error {
	switch letter {
	case 'L':
		o.Live = true
	case 'z':
		if o.Dirs < DirsAll {
			o.Dirs++
		}
	case 'D':
		o.LeafDirs = true
	case 'E':
		o.DirsOnly = true
	case 'b':
		o.OneFileSystem = true
	case '0':
		o.NulTerminated = true
	case 'e':
		o.TrailingSlash = true
	case 'v':
		// Verbosity: krsync always prints fpart's partition summary; nothing more to do.
	default:
		if reason, ok := unsupported(letter); ok {
			return usageErr("%s", reason)
		}
		return usageErr("unknown option -%c", letter)
	}
	return nil
}

// setValue applies one option that takes a value.
func (o *Options) setValue(letter byte, value string) error {
	switch letter {
	case 'f':
		n, err := parseCount(value)
		if err != nil {
			return usageErr("-f %q: %v", value, err)
		}
		o.MaxFiles = n
	case 's':
		n, err := ParseSize(value)
		if err != nil {
			return usageErr("-s %q: %v", value, err)
		}
		o.MaxBytes = n
	case 'n':
		n, err := parseCount(value)
		if err != nil {
			return usageErr("-n %q: %v", value, err)
		}
		if n > math.MaxInt32 {
			return usageErr("-n %q: too many partitions", value)
		}
		o.Parts = int(n)
	case 'x':
		o.Exclude = append(o.Exclude, value)
	case 'X':
		o.ExcludeFold = append(o.ExcludeFold, value)
	case 'y':
		o.Include = append(o.Include, value)
	case 'Y':
		o.IncludeFold = append(o.IncludeFold, value)
	case 'o':
		o.Output = value
	default:
		if reason, ok := unsupported(letter); ok {
			return usageErr("%s", reason)
		}
		return usageErr("unknown option -%c", letter)
	}
	return nil
}

// checkCombination refuses what fpart refuses whatever else is given.
func (o *Options) checkCombination() error {
	if o.Parts > 0 && (o.MaxFiles > 0 || o.MaxBytes > 0 || o.Live) {
		return usageErr("-n cannot be combined with -f, -s or -L (as in fpart)")
	}
	return nil
}

// Validate reports whether the options are complete: one partitioning mode, as fpart
// requires ("-n, -f or -s"), and no forbidden combination.
func (o Options) Validate() error {
	if err := o.checkCombination(); err != nil {
		return err
	}
	if o.Parts <= 0 && o.MaxFiles <= 0 && o.MaxBytes <= 0 {
		return usageErr("give -n, -f or -s (how to partition)")
	}
	if o.Parts < 0 || o.MaxFiles < 0 || o.MaxBytes < 0 || o.Readers < 0 || o.Spread < 0 {
		return usageErr("negative limits are not allowed")
	}
	return nil
}

// parseCount parses a positive decimal count (fpart refuses 0 and units for -f and -n).
func parseCount(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, errors.New("not a whole number")
	}
	if n <= 0 {
		return 0, errors.New("must be greater than 0")
	}
	return n, nil
}

// ParseSize parses a positive byte count with fpart's optional binary unit suffix
// (k, m, g, t, p, any case; "10G" is 10 GiB). A trailing "B" or "iB" is tolerated.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if u := strings.ToLower(t); strings.HasSuffix(u, "ib") {
		t = t[:len(t)-2]
	} else if strings.HasSuffix(u, "b") && len(u) > 1 && (u[len(u)-2] < '0' || u[len(u)-2] > '9') {
		t = t[:len(t)-1]
	}
	digits := strings.TrimRight(t, "kKmMgGtTpP")
	suffix := t[len(digits):]
	if len(suffix) > 1 {
		return 0, errors.New("unknown unit (use k, m, g, t or p)")
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, errors.New("not a size (digits and an optional unit k, m, g, t or p: 1000, 512M, 10G)")
	}
	if n <= 0 {
		return 0, errors.New("must be greater than 0")
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}[strings.ToLower(suffix)]
	if n > math.MaxInt64>>shift {
		return 0, errors.New("too large")
	}
	return n << shift, nil
}
