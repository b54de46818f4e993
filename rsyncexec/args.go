package rsyncexec

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/kballard/go-shellquote"
)

// DefaultOptions are the rsync options used when a Job gives none: the archive mode that the
// seed chart used, numeric ids (a pod's /etc/passwd says nothing about the volume's owners) and
// hard links, which partitions keep together so that one rsync run sees every name of an inode.
// The flags' help, krsync manifests and the worker template say this string.
const DefaultOptions = "--archive --numeric-ids --hard-links"

// DefaultArgs are DefaultOptions as arguments.
var DefaultArgs = strings.Fields(DefaultOptions)

// OptionError is an rsync option that krsync refuses, with the reason. Its message is one line.
type OptionError struct {
	Option string
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("rsync option %q refused: %s", e.Option, e.Reason)
}

// ParseArgs splits an --rsync-opts string like a POSIX shell (quotes and backslashes, no
// expansion) and validates the result with ValidateArgs. The options replace DefaultArgs, as
// fpsync's -o does, with one exception: --hard-links is added unless the options say
// --hard-links/-H or --no-hard-links/--no-H themselves. The partitioner keeps every name of
// an inode in one partition precisely so that rsync -H can link them; options such as the
// chart's "--archive --compress-level=9 --numeric-ids" would otherwise copy each name as a
// file of its own. An empty string gives nil, which a Job reads as DefaultArgs.
func ParseArgs(s string) ([]string, error) {
	args, err := shellquote.Split(s)
	if err != nil {
		return nil, fmt.Errorf("rsync options %q: %w", s, err)
	}
	if len(args) == 0 {
		return nil, nil
	}
	if err := ValidateArgs(args); err != nil {
		return nil, err
	}
	if said, _ := lastSwitch(args, 'H', "hard-links"); !said {
		args = append(args, "--hard-links")
	}
	return args, nil
}

// Reasons shared by several options.
const (
	reasonDelete    = "deletions are unsafe when each rsync sees only one partition: it would delete what other partitions copy"
	reasonRecursive = "each partition lists its entries; recursion would copy listed directories whole, again and again (-a is fine: --files-from turns its recursion off)"
	reasonList      = "krsync passes the partition's list itself with --files-from and --from0"
	reasonFromFile  = "krsync's --from0 makes rsync read this file as NUL-separated; use --exclude/--include/--filter rules or fpart's -x/-X instead"
	reasonRemote    = "krsync runs rsync locally between two mounted directories; remote-shell and daemon options make no sense there"
	reasonDryRun    = "krsync records partitions as done; a dry run would mark everything copied without copying it (preview with `krsync partition` or a plain rsync -n)"
	reasonDirLinks  = "it makes rsync follow symlinks in the destination, which could write outside it"
	reasonNotCopy   = "it does not copy anything"
	reasonQuiet     = "it hides rsync's --stats report, from which krsync counts the files and bytes copied (errors are reported either way)"
	reasonTempDir   = "krsync keeps rsync's temporary files in a directory of its own in the destination, removed at the end of the run; another one would keep a stopped run's half-written files where krsync does not clean up"
	reasonPartial   = "a stopped rsync leaves these directories with half-written files inside the destination, where krsync does not clean up (--partial works)"
	reasonDelay     = "it keeps a partition's files in .~tmp~ directories inside the destination until the end of that rsync run, which a stopped run leaves behind; with partitions, its all-at-once update covers one partition only anyway"
)

// refusedLong maps long option names (without the leading dashes) to the reason they are
// refused. Names that rsync accepts as --no-NAME are checked separately in refusedNegated.
var refusedLong = map[string]string{
	"recursive":           reasonRecursive,
	"old-dirs":            reasonRecursive, // emulates --dirs with -r --exclude='/*/*'
	"old-d":               reasonRecursive,
	"remove-source-files": "each worker would delete its partition's source files; krsync copies, it does not move",
	"remove-sent-files":   "each worker would delete its partition's source files; krsync copies, it does not move",
	"files-from":          reasonList,
	"from0":               reasonList,
	"exclude-from":        reasonFromFile,
	"include-from":        reasonFromFile,
	"dry-run":             reasonDryRun,
	"list-only":           reasonDryRun,
	"write-batch":         "batch files cannot be shared by parallel rsync runs",
	"only-write-batch":    "batch files cannot be shared by parallel rsync runs",
	"read-batch":          "batch files cannot be shared by parallel rsync runs",
	"server":              reasonRemote,
	"sender":              reasonRemote,
	"daemon":              reasonRemote,
	"rsh":                 reasonRemote,
	"rsync-path":          reasonRemote,
	"remote-option":       reasonRemote,
	"port":                reasonRemote,
	"address":             reasonRemote,
	"sockopts":            reasonRemote,
	"password-file":       reasonRemote,
	"contimeout":          reasonRemote,
	"early-input":         reasonRemote,
	"config":              reasonRemote,
	"dparam":              reasonRemote,
	"detach":              reasonRemote,
	"no-detach":           reasonRemote,
	"keep-dirlinks":       reasonDirLinks,
	"temp-dir":            reasonTempDir,
	"partial-dir":         reasonPartial,
	"delay-updates":       reasonDelay,
	"quiet":               reasonQuiet,
	"help":                reasonNotCopy,
	"version":             reasonNotCopy,
}

// refusedNegated are options whose --no- form breaks the list-driven transfer.
var refusedNegated = map[string]string{
	"relative": "the partition's paths are relative to the source root; --relative is what keeps them there",
	"R":        "the partition's paths are relative to the source root; --relative is what keeps them there",
	"dirs":     "listed directories (empty ones, and the directory-metadata pass) would be skipped",
	"d":        "listed directories (empty ones, and the directory-metadata pass) would be skipped",
	"from0":    reasonList,
	"0":        reasonList,
}

// refusedShort maps single-letter options to the long name reported in errors and the reason.
var refusedShort = map[byte][2]string{
	'r': {"-r (--recursive)", reasonRecursive},
	'0': {"-0 (--from0)", reasonList},
	'n': {"-n (--dry-run)", reasonDryRun},
	'F': {"-F (per-directory .rsync-filter files)", reasonFromFile},
	'K': {"-K (--keep-dirlinks)", reasonDirLinks},
	'e': {"-e (--rsh)", reasonRemote},
	'M': {"-M (--remote-option)", reasonRemote},
	'V': {"-V (--version)", reasonNotCopy},
	'q': {"-q (--quiet)", reasonQuiet},
	'T': {"-T (--temp-dir)", reasonTempDir},
}

// shortWithValue are the single-letter options that take a value (rsync(1) OPTIONS SUMMARY):
// the rest of a bundle, or the next argument, is that value.
const shortWithValue = "eBfMT@"

// longWithValue are the long options that take a value, as --opt=value or --opt value.
var longWithValue = map[string]bool{
	"info": true, "debug": true, "stderr": true, "backup-dir": true, "suffix": true,
	"chmod": true, "chown": true, "usermap": true, "groupmap": true, "copy-as": true,
	"timeout": true, "contimeout": true, "modify-window": true, "temp-dir": true,
	"compare-dest": true, "copy-dest": true, "link-dest": true,
	"compress-choice": true, "zc": true, "compress-level": true, "zl": true, "skip-compress": true,
	"checksum-choice": true, "cc": true, "checksum-seed": true, "block-size": true,
	"max-delete": true, "max-size": true, "min-size": true, "max-alloc": true,
	"partial-dir": true, "filter": true, "exclude": true, "include": true,
	"exclude-from": true, "include-from": true, "files-from": true,
	"address": true, "port": true, "sockopts": true, "out-format": true, "log-format": true,
	"log-file": true, "log-file-format": true, "password-file": true, "bwlimit": true,
	"write-batch": true, "only-write-batch": true, "read-batch": true, "protocol": true,
	"iconv": true, "rsh": true, "rsync-path": true, "remote-option": true, "outbuf": true,
	"early-input": true, "config": true, "dparam": true, "stop-after": true, "time-limit": true,
	"stop-at": true, "compress-threads": true, "zt": true, "confine-root": true,
}

// ValidateArgs refuses rsync options that break a parallel, list-driven copy, with a one-line
// reason: deletions, recursion, moving (--remove-source-files), list options that conflict
// with krsync's own --files-from/--from0, filter merge files (--from0 would make rsync read
// them NUL-separated), dry runs (a partition would be recorded as done without being copied),
// --quiet (it hides the --stats report), remote-shell and daemon options, --keep-dirlinks, and
// the options that make rsync keep files in directories of their own inside the destination
// (--temp-dir, which krsync sets itself, --partial-dir and --delay-updates): krsync creates
// and removes nothing in the destination but its own temporary directory.
// Paths are refused too: they come from the partition list. Everything else (-S, -A, -X, -z,
// --bwlimit, --checksum, -v, ...) passes through to rsync, which reports options it does not
// know (exit 1, not retryable).
func ValidateArgs(args []string) error {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return &OptionError{Option: arg, Reason: "paths come from the partition list, not from the rsync options"}
		case strings.HasPrefix(arg, "--"):
			name, value, hasValue := strings.Cut(arg[2:], "=")
			if longWithValue[name] && !hasValue {
				if i+1 >= len(args) {
					return &OptionError{Option: arg, Reason: "it needs a value"}
				}
				i++
				value = args[i]
			}
			if err := checkLong(arg, name, value); err != nil {
				return err
			}
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			consumed, err := checkShortBundle(arg, args[i+1:])
			if err != nil {
				return err
			}
			i += consumed
		default:
			return &OptionError{Option: arg, Reason: "not an option: paths come from the partition list (write values as --option=value)"}
		}
	}
	return nil
}

// checkLong checks one long option; value is its value when it takes one.
func checkLong(arg, name, value string) error {
	if name == "del" || strings.HasPrefix(name, "delete") { // --delete, --delete-after, --delete-missing-args, ... (not --delay-updates)
		return &OptionError{Option: arg, Reason: reasonDelete}
	}
	if reason, ok := refusedLong[name]; ok {
		return &OptionError{Option: arg, Reason: reason}
	}
	if negated, ok := strings.CutPrefix(name, "no-"); ok {
		if reason, ok := refusedNegated[negated]; ok {
			return &OptionError{Option: arg, Reason: reason}
		}
	}
	if name == "filter" {
		return checkFilterRule(arg, value)
	}
	return nil
}

// checkShortBundle checks a bundle of short options such as -avzH or -f'- *.o'; rest are the
// arguments after it. It returns how many of them the bundle consumed as a value.
func checkShortBundle(arg string, rest []string) (int, error) {
	letters := arg[1:]
	for j := 0; j < len(letters); j++ {
		c := letters[j]
		if refused, ok := refusedShort[c]; ok {
			return 0, &OptionError{Option: arg, Reason: refused[0] + ": " + refused[1]}
		}
		if strings.IndexByte(shortWithValue, c) < 0 {
			continue
		}
		value, consumed := letters[j+1:], 0
		if value == "" {
			if len(rest) == 0 {
				return 0, &OptionError{Option: arg, Reason: "-" + string(c) + " needs a value"}
			}
			value, consumed = rest[0], 1
		}
		if c == 'f' {
			if err := checkFilterRule(arg, value); err != nil {
				return 0, err
			}
		}
		return consumed, nil
	}
	return 0, nil
}

// checkFilterRule refuses merge rules (". FILE", ": FILE", "merge FILE", "dir-merge FILE"),
// whose files --from0 would make rsync read NUL-separated (rsync(1), --from0).
func checkFilterRule(arg, rule string) error {
	rule = strings.TrimLeft(rule, " ")
	for _, merge := range []string{"merge", "dir-merge", ".", ":"} {
		if strings.HasPrefix(rule, merge) {
			return &OptionError{Option: arg, Reason: "merge rules read files, and " + reasonFromFile}
		}
	}
	return nil
}

// wantsHumanNumbers says whether args turn on rsync's human-readable numbers (-h), which
// would make --stats print 1.23M instead of exact byte counts.
func wantsHumanNumbers(args []string) bool {
	_, on := lastSwitch(args, 'h', "human-readable")
	return on
}

// lastSwitch reads an on/off option the way rsync does, the last word winning: on by -X
// (alone or in a bundle such as -aX) or --long, off by --no-long or --no-X. said is false when
// args mention it neither way. Option values (-f RULE, --exclude=PATTERN) are skipped.
func lastSwitch(args []string, short byte, long string) (said, on bool) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--"+long:
			said, on = true, true
		case arg == "--no-"+long || arg == "--no-"+string(short):
			said, on = true, false
		case strings.HasPrefix(arg, "--"):
			name, _, hasValue := strings.Cut(arg[2:], "=")
			if longWithValue[name] && !hasValue {
				i++
			}
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			for j := 1; j < len(arg); j++ {
				if arg[j] == short {
					said, on = true, true
				}
				if strings.IndexByte(shortWithValue, arg[j]) >= 0 {
					if j == len(arg)-1 {
						i++
					}
					break
				}
			}
		}
	}
	return said, on
}

// ErrNotFound is wrapped by LookPath's error when rsync cannot be found.
var ErrNotFound = errors.New("rsync not found")

// LookPath finds the rsync binary (binary defaults to "rsync") like a shell would and returns
// its path, or a one-line error that says how to install it.
func LookPath(binary string) (string, error) {
	if binary == "" {
		binary = "rsync"
	}
	path, err := exec.LookPath(binary)
	if err == nil {
		return path, nil
	}
	if strings.Contains(binary, "/") {
		return "", fmt.Errorf("%w at %s: it is missing or not executable (install rsync, or give the right path)", ErrNotFound, binary)
	}
	return "", fmt.Errorf("%w in PATH: install rsync (apt-get install rsync, apk add rsync, dnf install rsync)", ErrNotFound)
}
