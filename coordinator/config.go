package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/pathcheck"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultLeaseTTL         = 30 * time.Second
	DefaultMaxAttempts      = 3
	DefaultMaxWait          = 30 * time.Second
	DefaultMaxLongPolls     = 1024
	DefaultDirsPerPartition = 10000
	DefaultLinger           = 30 * time.Second
)

// Config configures a coordinator. Zero durations and counts take the defaults above.
type Config struct {
	// Source is the root of the tree to copy; it must be a readable directory.
	Source string
	// Dest is where the workers copy to (as the workers see it: /dest in a pod). It is part
	// of the run's identity, and decides whether StateDir lies in the destination.
	Dest string
	// Volumes names the volumes behind Source and Dest when the paths alone do not (in a
	// pod they are always /source and /dest): e.g. the PersistentVolumes of the claims.
	// It is part of the run's identity.
	Volumes string
	// Partitioner are fpart's options for the walk (see LiveDefaults).
	Partitioner fpart.Options
	// Walk, when set, replaces fpart.Walk over Source (tests feed partitions through it).
	Walk WalkFunc
	// Identity names the run in the journal; empty means the absolute source and
	// destination, Volumes and the partitioner options. A state directory written under
	// another identity is refused (ErrJournalMismatch). It also names the run's temporary
	// directory in the destination (TempDirName).
	Identity string
	// LeaseTTL is how long a lease lives without a renewal.
	LeaseTTL time.Duration
	// MaxAttempts is how many leases a partition gets before it is failed.
	MaxAttempts int
	// MaxWait bounds a lease long poll, whatever the worker asks for.
	MaxWait time.Duration
	// MaxLongPolls caps concurrent long polls; past it, lease answers "wait" at once.
	MaxLongPolls int
	// Token is the bearer token every API call but /healthz and /readyz must carry. Required.
	Token string
	// StateDir holds the journal; a run restarted on it resumes. Empty: a throwaway journal
	// in a temporary directory, removed at the end. The coordinator is the one owner of what
	// it creates there: the directory when missing (recorded in the journal), the journal;
	// a run that ended removes the journal, and the directory when krsync created it and
	// it is empty.
	StateDir string
	// DirsPerPartition is how many directories go in one directory-metadata partition.
	DirsPerPartition int
	// Linger is how long Run keeps answering "done" after the end, for workers that have not
	// asked yet; Run returns earlier once every worker it has seen was told.
	Linger time.Duration
	// TLSCertFile and TLSKeyFile, when both set, make the API HTTPS.
	TLSCertFile, TLSKeyFile string
	// Mirror makes the destination an exact copy: once the walk is done, every walked
	// directory gets a prune lease (leaseapi.KindPrune, leaseapi.Mirror) before the directory
	// pass. It is part of the run's identity.
	Mirror bool
	// DryRun, with Mirror only: the workers copy nothing and delete nothing, they report what
	// --mirror would delete. It is part of the run's identity.
	DryRun bool
	// CompareDest, when set, makes the walk compare every file and symlink with the
	// destination as it goes and leave out of the partitions what it says is already there
	// unchanged: such an entry then costs one lookup in the destination instead of a source
	// and a destination lookup in a worker, and nothing else. Only for a coordinator that sees
	// the destination exactly as its workers do, with the quick check their rsync options make
	// (rsyncexec.DestCompare.Compare): krsync local, and a coordinator whose worker Job mounts
	// the same destination (kube.Driver.WorkersSeeDest). Not part of the identity: what is
	// left out is equal already, with or without it.
	CompareDest DestComparer
	// Verify, when set, compares the destination with the source once the copy has settled,
	// in verify leases (verifyleases.go); Status.Verify tells the outcome. Not part of the
	// run's identity: the comparison is not journaled.
	Verify *VerifyConfig
}

// WalkPartition is one partition found by the walk.
type WalkPartition struct {
	// List holds the paths relative to the source root, each ended by a NUL byte.
	List    []byte
	Entries int64
	Bytes   int64
}

// DestComparer opens the destination's directory rel (relative to the destination root, "."
// for the root) for the walk: same says whether the destination holds an entry of it (the
// source's directory open as dirFD, its lstat st) unchanged, done closes it; a nil same
// compares nothing there. It is called from several goroutines at once.
type DestComparer = func(rel string) (same func(dirFD int, name string, st *unix.Stat_t) bool, done func())

// WalkHandler receives what a walk finds, from a single goroutine, in walk order.
type WalkHandler struct {
	Partition func(WalkPartition) error
	// Dir is called once for every directory kept, the root being ".".
	Dir func(rel string) error
	// Error reports a non-fatal walk error (an unreadable directory, a vanished entry).
	Error func(rel string, err error)
	// Unchanged counts an entry left out of every partition, with its size, because the
	// destination already holds it unchanged (Config.CompareDest).
	Unchanged func(size int64)
}

// WalkFunc walks the source and reports to h; an error ends the run. A run on the journal
// of an interrupted one walks afresh (Coordinator.Run).
type WalkFunc func(ctx context.Context, h WalkHandler) error

// New checks cfg and the source and returns a coordinator ready to Run.
func New(cfg Config, log zerolog.Logger) (*Coordinator, error) {
	if cfg.Source == "" {
		return nil, invalidf("no source directory given")
	}
	if err := pathcheck.Source(cfg.Source); err != nil {
		return nil, invalidf("%w", err)
	}
	if cfg.DryRun && !cfg.Mirror {
		return nil, invalidf("--dry-run needs --mirror: it lists what --mirror would delete")
	}
	if err := checkVerify(cfg); err != nil {
		return nil, err
	}
	if cfg.Identity == "" {
		cfg.Identity = defaultIdentity(cfg.Source, cfg.Dest, cfg.Volumes, cfg.Partitioner) + mirrorMode(cfg)
	}
	tempDir := TempDirName(cfg.Identity)
	if err := checkOwnNames(cfg.Source, cfg.Dest, cfg.StateDir, tempDir); err != nil {
		return nil, invalidf("%w", err)
	}
	sourceCheck, err := pickSourceCheck(cfg.Source, cfg.StateDir, tempDir)
	if err != nil {
		return nil, invalidf("%w", err)
	}
	if cfg.Walk == nil {
		if err := cfg.Partitioner.Validate(); err != nil {
			return nil, invalidf("fpart options: %w", err)
		}
		cfg.Walk = FpartWalk(cfg.Source, cfg.CompareDest, cfg.Partitioner)
	}
	if cfg.Token == "" {
		return nil, invalidf("no API token given")
	}
	if cfg.LeaseTTL < 0 || cfg.MaxWait < 0 || cfg.Linger < 0 || cfg.MaxAttempts < 0 || cfg.MaxLongPolls < 0 || cfg.DirsPerPartition < 0 {
		return nil, invalidf("durations and counts must not be negative")
	}
	cfg.LeaseTTL = orDefault(cfg.LeaseTTL, DefaultLeaseTTL)
	cfg.MaxAttempts = orDefault(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.MaxWait = orDefault(cfg.MaxWait, DefaultMaxWait)
	cfg.MaxLongPolls = orDefault(cfg.MaxLongPolls, DefaultMaxLongPolls)
	cfg.DirsPerPartition = orDefault(cfg.DirsPerPartition, DefaultDirsPerPartition)
	cfg.Linger = orDefault(cfg.Linger, DefaultLinger)
	c := &Coordinator{
		cfg:   cfg,
		log:   log,
		polls: make(chan struct{}, cfg.MaxLongPolls),
	}
	c.leases = &ledger{
		q:   newQueue(cfg.LeaseTTL, cfg.MaxAttempts, cfg.Mirror, cfg.DryRun, cfg.Verify != nil),
		log: log,
		extra: leaseapi.Lease{
			TempDir: tempDir, SourceCheck: sourceCheck, Mirror: mirrorSpec(cfg, tempDir),
		},
		verify: newVerifyPass(cfg),
	}
	c.metrics = newMetrics(c)
	c.leases.metrics = c.metrics
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, invalidf("TLS needs both a certificate and a key")
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, invalidf("TLS certificate: %w", err)
		}
		c.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return c, nil
}

// invalidf builds a one-line configuration error that wraps ErrInvalidConfig without
// repeating its text.
func invalidf(format string, args ...any) error {
	return invalidConfigError{fmt.Errorf(format, args...)}
}

type invalidConfigError struct{ err error }

func (e invalidConfigError) Error() string   { return e.err.Error() }
func (e invalidConfigError) Unwrap() []error { return []error{e.err, ErrInvalidConfig} }

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
