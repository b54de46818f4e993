package rsyncexec

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Exit codes of rsync (rsync(1), EXIT VALUES) that krsync treats specially.
const (
	ExitOK       = 0
	ExitPartial  = 23 // some files/attrs were not transferred
	ExitVanished = 24 // source files vanished before they could be transferred
	ExitKilled   = -1 // rsync was killed by a signal (ExitError.Signal names it)
)

const exitUnknownCode = "unknown exit code"

// exitMeaning is rsync(1) EXIT VALUES, and whether another attempt can help.
var exitMeaning = map[int]struct {
	meaning   string
	retryable bool
}{
	1:  {"syntax or usage error", false},
	2:  {"protocol incompatibility", false},
	3:  {"errors selecting input/output files, dirs", false},
	4:  {"requested action not supported", false},
	5:  {"error starting client-server protocol", false},
	6:  {"daemon unable to append to log-file", false},
	10: {"error in socket I/O", true},
	11: {"error in file I/O", true},
	12: {"error in rsync protocol data stream", true},
	13: {"errors with program diagnostics", false},
	14: {"error in IPC code", true},
	15: {"sibling process crashed", true},
	16: {"sibling process was killed by a signal", true},
	19: {"received SIGUSR1", true},
	20: {"received SIGINT, SIGTERM, or SIGHUP", true},
	21: {"some error returned by waitpid()", true},
	22: {"error allocating core memory buffers", true},
	23: {"partial transfer due to error", true},
	24: {"partial transfer due to vanished source files", true},
	25: {"the --max-delete limit stopped deletions", false},
	30: {"timeout in data send/receive", true},
	35: {"timeout waiting for daemon connection", true},
}

// ExitMeaning is rsync's name for an exit code (rsync(1), EXIT VALUES).
func ExitMeaning(code int) string {
	if code == ExitKilled {
		return "killed by a signal"
	}
	if m, ok := exitMeaning[code]; ok {
		return m.meaning
	}
	return exitUnknownCode
}

// ExitError is an rsync run that ended with an exit code krsync counts as a failure (anything
// but 0 and 24, and 23 when every complaint was about a vanished path).
type ExitError struct {
	// Code is rsync's exit code, or ExitKilled when a signal ended it.
	Code int
	// Signal names the signal when Code is ExitKilled.
	Signal string
	// Args is the command line, binary first.
	Args []string
	// StderrTail holds rsync's last lines of stderr (at most 20).
	StderrTail []string
	// FailedPaths are the paths rsync complained about, relative to the source or destination
	// root (at most 1000; FailedCount counts them all), in the order rsync reported them.
	FailedPaths []string
	FailedCount int
	// Vanished are listed paths that were gone when rsync looked (not failures).
	Vanished []string
	// noSpace is set when rsync said "No space left on device" or "Disk quota exceeded".
	noSpace bool
	// last is the line shown by Error.
	last string
}

// Error is one line: the code, its meaning and rsync's last complaint.
func (e *ExitError) Error() string {
	var b strings.Builder
	if e.Code == ExitKilled {
		fmt.Fprintf(&b, "rsync killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, "rsync exit %d (%s)", e.Code, ExitMeaning(e.Code))
	}
	if e.noSpace {
		b.WriteString(", destination full")
	}
	if e.FailedCount > 0 {
		fmt.Fprintf(&b, ", %d path(s) failed", e.FailedCount)
	}
	if e.last != "" {
		b.WriteString(": ")
		b.WriteString(e.last)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// Retryable says whether another attempt may succeed: transient I/O, protocol, timeout and
// signal failures and partial transfers are; usage errors, protocol incompatibilities and
// unsupported options (1-6, 13, 25) are not, since the same command would fail the same way.
// Unknown codes count as retryable: the coordinator bounds the attempts.
func (e *ExitError) Retryable() bool {
	if e.Code == ExitKilled {
		return true
	}
	if m, ok := exitMeaning[e.Code]; ok {
		return m.retryable
	}
	return true
}

// NoSpace says whether the destination was full (ENOSPC or a quota) when rsync failed with
// a file I/O, stream or partial-transfer error, so the worker can say "destination full".
func (e *ExitError) NoSpace() bool {
	return e.noSpace && (e.Code == 11 || e.Code == 12 || e.Code == ExitPartial)
}

// Retryable says whether a Run error is worth another attempt: an *ExitError says so itself;
// a run stopped by its context is (the lease goes back to the queue); a bad list, entries
// refused for a symlinked parent or a path too long (*RefusedError) or a missing rsync is not; other setup
// failures (temporary files) are.
func Retryable(err error) bool {
	var exit *ExitError
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrSymlinkParent), errors.Is(err, ErrPathTooLong):
		return false
	case errors.As(err, &exit):
		return exit.Retryable()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.Is(err, ErrBadList), errors.Is(err, ErrBadJob), errors.Is(err, ErrNotFound):
		return false
	}
	var opt *OptionError
	return !errors.As(err, &opt)
}
