package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/krsync/krsync/coordinator"
	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/pathcheck"
	"github.com/krsync/krsync/rsyncexec"
)

// DefaultFpartOptions are the walk's options of a local copy: fpart's -zz (empty directories
// and unreadable ones are listed too). A Kubernetes copy also skips snapshot directories
// (fpart.DefaultOptions).
const DefaultFpartOptions = "-zz"

// Config is one local copy. Its error messages name the flags of krsync local, which
// mirror these fields one to one.
type Config struct {
	Source string // directory to copy from
	Dest   string // directory to copy into; created when its parent exists
	// Workers is how many rsyncs run at once.
	Workers int
	// FpartOpts are fpart's options for the walk (see coordinator.LiveDefaults).
	FpartOpts string
	// FilesPerPartition is the largest live partition, in entries.
	FilesPerPartition int64
	// RsyncOpts replace rsyncexec.DefaultOptions when not empty (see rsyncexec.ParseArgs).
	RsyncOpts string
	// Rsync is the rsync binary, a path or a name looked up in PATH.
	Rsync string
	// StateDir holds the journal; empty means one per source and destination pair under
	// $XDG_STATE_HOME or ~/.local/state/krsync (see chooseStateDir). The coordinator creates
	// it when missing and removes what it created after a run that ended.
	StateDir    string
	LeaseTTL    time.Duration
	MaxAttempts int
	// Progress, when not nil, receives a progress bar (a terminal).
	Progress io.Writer
	// Mirror deletes what the destination holds and the source does not (coordinator.Config.Mirror).
	Mirror bool
	// DryRun, with Mirror only: copy nothing, delete nothing, log what would be deleted.
	DryRun bool
	// Verify, when set, compares the destination with the source after the copy, in verify
	// leases that the workers run (coordinator.Config.Verify).
	Verify *coordinator.VerifyConfig
}

// ErrInvalidConfig is wrapped by Run's error when the configuration, the paths or the state
// directory are unusable; nothing was written then.
var ErrInvalidConfig = errors.New("invalid local configuration")

func invalidf(format string, args ...any) error {
	return invalidError{fmt.Errorf(format, args...)}
}

type invalidError struct{ err error }

func (e invalidError) Error() string   { return e.err.Error() }
func (e invalidError) Unwrap() []error { return []error{e.err, ErrInvalidConfig} }

// MaxWorkers bounds --workers: each worker runs an rsync at a time (two processes, with
// their buffers), far more than any one machine's disks or network keep busy; a mistyped
// count would otherwise start until memory runs out.
const MaxWorkers = 1024

// plan are the checked, symlink-resolved locations and options of one run.
type plan struct {
	source, dest, stateDir string
	destExists             bool
	rsync                  string
	rsyncArgs              []string
	fpart                  fpart.Options
}

// check validates everything before anything is written: the source, the destination and
// their overlap, rsync and its options, fpart's options, and the state directory.
func (cfg Config) check() (plan, error) {
	var p plan
	var err error
	switch {
	case cfg.Source == "":
		return p, invalidf("--source is empty: name the directory to copy from")
	case cfg.Dest == "":
		return p, invalidf("--dest is empty: name the directory to copy into")
	case cfg.Workers < 1:
		return p, invalidf("--workers %d: need at least 1", cfg.Workers)
	case cfg.Workers > MaxWorkers:
		return p, invalidf("--workers %d: at most %d (each is an rsync process at a time)", cfg.Workers, MaxWorkers)
	case cfg.LeaseTTL <= 0:
		return p, invalidf("--lease-ttl %s: must be positive", cfg.LeaseTTL)
	case cfg.MaxAttempts < 1:
		return p, invalidf("--max-attempts %d: need at least 1", cfg.MaxAttempts)
	case cfg.DryRun && !cfg.Mirror:
		return p, invalidf("--dry-run needs --mirror: it lists what --mirror would delete")
	}
	if p.fpart, err = coordinator.ParsePartitioner(cfg.FpartOpts, cfg.FilesPerPartition, cfg.Workers); err != nil {
		return p, invalidf("--fpart-opts: %v", err)
	}
	if p.rsyncArgs, err = rsyncexec.ParseArgs(cfg.RsyncOpts); err != nil {
		return p, invalidf("--rsync-opts: %v", err)
	}
	if p.rsync, err = rsyncexec.LookPath(cfg.Rsync); err != nil {
		return p, invalidf("%v", err)
	}
	if p.source, err = pathcheck.ResolveSource(cfg.Source); err != nil {
		return p, invalidf("%v", err)
	}
	if p.dest, p.destExists, err = resolveDest(cfg.Dest); err != nil {
		return p, invalidf("%v", err)
	}
	if cfg.DryRun && !p.destExists {
		return p, invalidf("--dry-run: the destination %s does not exist: --mirror would delete nothing", cfg.Dest)
	}
	if err := pathcheck.Overlap(p.source, p.dest); err != nil {
		return p, invalidf("%v", err)
	}
	if err := coordinator.CheckRootNotExcluded(p.fpart, p.source); err != nil {
		return p, invalidf("--fpart-opts: %v", err)
	}
	if p.stateDir, err = chooseStateDir(cfg.StateDir, p.source, p.dest); err != nil {
		return p, invalidf("%v", err)
	}
	return p, nil
}

// resolveDest resolves dir; a missing destination is fine when its parent is a writable
// directory (rsync creates it too).
func resolveDest(dir string) (resolved string, exists bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, fmt.Errorf("destination %s: %w", dir, err)
	}
	if _, err := os.Lstat(abs); errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(abs)
		if err := pathcheck.Dest(parent); err != nil {
			return "", false, fmt.Errorf("destination %s cannot be created: %w", dir, err)
		}
		realParent, err := filepath.EvalSymlinks(parent)
		if err != nil {
			return "", false, fmt.Errorf("destination %s: %w", dir, err)
		}
		return filepath.Join(realParent, filepath.Base(abs)), false, nil
	}
	if err := pathcheck.Dest(abs); err != nil {
		return "", false, err
	}
	resolved, err = filepath.EvalSymlinks(abs)
	return resolved, true, err
}

// workerRsyncArgs are the rsync options the workers run with.
func (p plan) workerRsyncArgs() []string {
	if p.rsyncArgs == nil {
		return rsyncexec.DefaultArgs
	}
	return p.rsyncArgs
}
