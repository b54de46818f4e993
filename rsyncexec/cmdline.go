package rsyncexec

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// DefaultMaxArgBytes is the default Job.MaxArgBytes: the most bytes a command line (argv and
// the environment, with their pointers) may take when the entries are passed as arguments.
// Linux allows a quarter of the stack limit (execve(2), "Limits on size of arguments and
// environment"; getconf ARG_MAX, 2 MiB under the usual 8 MiB stack); 1 MiB leaves half of it.
const DefaultMaxArgBytes = 1 << 20

const (
	// maxArgEntries bounds how many entries are passed as arguments; larger lists go through
	// --files-from. Real paths hit the byte budget long before (each argument costs its bytes,
	// the source root, a NUL and an 8-byte pointer); this bounds the argv array for lists of
	// tiny names.
	maxArgEntries = 1 << 15
	// maxArgPathLen is the longest argument rsync reads whole: its sender copies each
	// argument into a MAXPATHLEN (PATH_MAX, 4096) buffer with strlcpy, cutting a longer one
	// short without a word (flist.c, send_file_list), which could name another file.
	maxArgPathLen = 4095
	// pointerBytes is what execve counts per argument and variable besides its bytes.
	pointerBytes = 8
)

// argBudget is the byte budget for a command line with the entries as arguments: max when
// the caller set one (Job.MaxArgBytes > 0; should execve still refuse, Run falls back to
// --files-from), 0 (never) when max is negative, and by default DefaultMaxArgBytes or, when
// the stack limit is low, an eighth of it: execve allows argv and envp a quarter of the stack
// limit (fs/exec.c, get_arg_page), and half of that keeps a margin.
func argBudget(max int) int {
	switch {
	case max < 0:
		return 0
	case max > 0:
		return max
	}
	budget := DefaultMaxArgBytes
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_STACK, &rl); err == nil && rl.Cur != unix.RLIM_INFINITY {
		if eighth := rl.Cur / 8; eighth < uint64(budget) {
			budget = int(eighth)
		}
	}
	return budget
}

// entryArgs turns a cleaned list ("./NAME" entries) into rsync source arguments
// "SOURCE/./NAME", or returns ok=false when one of them is too long for rsync to read whole
// or when there are more than maxArgEntries of them. source is absolute and clean.
//
// With --relative, rsync's sender takes the part of an argument after its first "/./" as
// the path to recreate below the destination and changes into the part before it (rsync(1),
// --relative; flist.c, send_file_list): "SOURCE/./a/b" is copied to DEST/a/b with a and a/b
// as implied directories, as the list entry "./a/b" is with --files-from. A clean absolute
// source holds no "/./" of its own, and NAME, cleaned, holds none either.
//
// None of these arguments can be read as a remote host spec, whatever the names hold: each
// begins with "/", and rsync's parse_hostspec (options.c) stops at the first '/' or ':' and
// finds no host when the '/' comes first; "rsync://" is only recognised at the start. A local
// sender neither globs nor unescapes its arguments (rsync globs in read_args, io.c, for
// arguments that come from a remote peer; main.c leaves a local transfer's arguments alone),
// so '*', '?', '[' and '\' in names are plain bytes. Comment characters mean nothing in argv.
func entryArgs(source string, list []byte) (args []string, ok bool) {
	prefix := dirArg(source) + "./"
	n := bytes.Count(list, []byte{0})
	if n > maxArgEntries {
		return nil, false
	}
	args = make([]string, 0, n)
	for rest := list; len(rest) > 0; {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			i = len(rest)
		}
		name := bytes.TrimPrefix(rest[:i], []byte("./"))
		rest = rest[min(i+1, len(rest)):]
		if len(name) == 0 {
			continue
		}
		if len(prefix)+len(name) > maxArgPathLen {
			return nil, false
		}
		args = append(args, prefix+string(name))
	}
	return args, true
}

// commandBytes is what execve counts against its limit for argv and envp: every string with
// its NUL, and a pointer to each.
func commandBytes(argv, env []string) int {
	n := 0
	for _, s := range argv {
		n += len(s) + 1 + pointerBytes
	}
	for _, s := range env {
		n += len(s) + 1 + pointerBytes
	}
	return n
}

// searchableDir says whether dir is a directory that this process may enter, as rsync must
// (it changes into the source before reading the entries).
func searchableDir(dir string) bool {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false
	}
	return unix.Faccessat(unix.AT_FDCWD, dir, unix.X_OK, unix.AT_EACCESS) == nil
}
