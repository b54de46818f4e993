package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/fpart"
	"github.com/krsync/krsync/leaseapi"
	"github.com/krsync/krsync/pathcheck"
)

// ErrIncomplete is wrapped by Run's error when the run is over but did not copy everything:
// partitions were given up (ErrPartitionsFailed too) or entries could not be read during the
// walk (ErrWalkErrors too). Nothing is lost silently: either makes the exit code non-zero.
var ErrIncomplete = errors.New("the copy is incomplete")

// ErrPartitionsFailed is wrapped by Run's error when some partitions were given up.
var ErrPartitionsFailed = errors.New("some partitions failed")

// ErrWalkErrors is wrapped by Run's error when the walk could not read some entries
// (an unreadable directory): nothing below them was partitioned, so nothing was copied.
var ErrWalkErrors = errors.New("some entries could not be read during the walk")

// ErrInvalidConfig is wrapped by New's error when the configuration or the source is unusable.
var ErrInvalidConfig = errors.New("invalid coordinator configuration")

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
	// in a temporary directory, removed at the end.
	StateDir string
	// DirsPerPartition is how many directories go in one directory-metadata partition.
	DirsPerPartition int
	// Linger is how long Run keeps answering "done" after the end, for workers that have not
	// asked yet; Run returns earlier once every worker it has seen was told.
	Linger time.Duration
	// TLSCertFile and TLSKeyFile, when both set, make the API HTTPS.
	TLSCertFile, TLSKeyFile string
}

// WalkPartition is one partition found by the walk.
type WalkPartition struct {
	// List holds the paths relative to the source root, each ended by a NUL byte.
	List    []byte
	Entries int64
	Bytes   int64
}

// WalkHandler receives what a walk finds, from a single goroutine, in walk order.
type WalkHandler struct {
	Partition func(WalkPartition) error
	// Dir is called once for every directory kept, the root being ".".
	Dir func(rel string) error
	// Error reports a non-fatal walk error (an unreadable directory, a vanished entry).
	Error func(rel string, err error)
}

// WalkFunc walks the source and reports to h; an error ends the run. It must be
// deterministic for the same tree: after a crash the walk is replayed, and partitions
// already in the journal are skipped by content.
type WalkFunc func(ctx context.Context, h WalkHandler) error

// Coordinator hands out the partitions of one source tree to workers. Create it with New
// and run it once with Run.
type Coordinator struct {
	cfg     Config
	log     zerolog.Logger
	q       *queue
	tls     *tls.Config
	polls   chan struct{} // long-poll semaphore
	ready   atomic.Bool
	journal *journal // set by Run before serving
	// tempDir is the run's directory for rsync's temporary files, relative to the
	// destination root (Lease.TempDir).
	tempDir string
	// sourceCheck are a few top-level names of the source (Lease.SourceCheck).
	sourceCheck []string
}

// New checks cfg and the source and returns a coordinator ready to Run.
func New(cfg Config, log zerolog.Logger) (*Coordinator, error) {
	if cfg.Source == "" {
		return nil, invalidf("no source directory given")
	}
	if err := pathcheck.Source(cfg.Source); err != nil {
		return nil, invalidf("%w", err)
	}
	if cfg.Identity == "" {
		cfg.Identity = defaultIdentity(cfg.Source, cfg.Dest, cfg.Volumes, cfg.Partitioner)
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
		cfg.Walk = FpartWalk(cfg.Source, cfg.Partitioner)
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
		q:     newQueue(cfg.LeaseTTL, cfg.MaxAttempts),
		polls: make(chan struct{}, cfg.MaxLongPolls),

		tempDir:     tempDir,
		sourceCheck: sourceCheck,
	}
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

// Status is a snapshot of the run's progress.
func (c *Coordinator) Status() leaseapi.Status { return c.q.status() }

// ReleaseWorker hands back every lease held by a worker that is gone (a deleted, evicted or
// failed pod) without counting it as an attempt, and forgets the worker. It returns how many.
func (c *Coordinator) ReleaseWorker(name string) int {
	n := c.q.releaseWorker(name)
	if n > 0 {
		c.log.Info().Str("worker", name).Int("released", n).Msg("worker gone: leases handed back")
	}
	return n
}

// Run opens the journal, walks the source and serves the lease API on ln until every
// partition is done or failed and the workers were told (bounded by Linger), or ctx ends.
// It closes ln. The error wraps ErrIncomplete when the run ended without copying
// everything; the journal is then forgotten, so that the next run walks again. Only a run
// that was stopped before the end (ctx, a fatal error) keeps its journal, to resume.
func (c *Coordinator) Run(ctx context.Context, ln net.Listener) (leaseapi.Status, error) {
	_, stateInDest := below(c.cfg.StateDir, c.cfg.Dest)
	stateInDest = stateInDest && c.cfg.StateDir != "" && c.cfg.Dest != ""
	j, st, aside, err := openAndLoad(c.cfg.StateDir, c.cfg.Identity, stateInDest)
	if err != nil {
		ln.Close()
		return c.q.status(), err
	}
	switch {
	case aside != "" && stateInDest:
		c.log.Warn().Str("removed", aside).Msg("the journal was corrupt: removed (it lies in the destination, which must end equal to the source), walking afresh (rsync skips what is already copied)")
	case aside != "":
		c.log.Warn().Str("set_aside", aside).Msg("the journal was corrupt: set aside, walking afresh (rsync skips what is already copied); remove the file once you no longer need it")
	}
	status, err := c.run(ctx, ln, j, st)
	ended := err == nil || errors.Is(err, ErrIncomplete)
	if cerr := c.endJournal(j, ended); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err == nil {
		c.log.Info().Int64("partitions", status.Partitions.Done).Int64("files_transferred", status.FilesTransferred).
			Int64("bytes_transferred", status.BytesTransferred).Int64("vanished", status.Vanished).Msg("all partitions done")
	}
	return status, err
}

// endJournal closes the journal. A run that ended (complete or not) leaves no journal
// behind: the next run on the same state dir walks afresh instead of resuming a run that is
// over (and skips, in rsync, what is already there). The state directory goes too when
// krsync created it and it is empty; its parent's mtime (the destination root's, set by the
// directory-metadata pass, for /dest/.krsync-state) is put back. A failure to put it back
// makes the run incomplete: the destination would not equal the source.
func (c *Coordinator) endJournal(j *journal, ended bool) error {
	if err := j.closeGuarded(); err != nil {
		c.log.Error().Err(err).Msg("closing the journal")
		return nil
	}
	if !ended || c.cfg.StateDir == "" {
		return nil
	}
	if err := os.Remove(j.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn().Err(err).Msg("removing the journal of the finished run")
		return nil
	}
	if j.createdDir == "" {
		return nil
	}
	parentDir := filepath.Dir(j.createdDir)
	parent, err := os.Stat(parentDir)
	if err != nil {
		return fmt.Errorf("%w: the state directory's parent %s: %w", ErrIncomplete, parentDir, err)
	}
	// Only when empty: a token file or anything the user put there stays.
	if err := os.Remove(j.createdDir); err != nil {
		c.log.Info().Err(err).Str("state_dir", j.createdDir).Msg("state directory kept: not empty")
		return nil
	}
	if err := os.Chtimes(parentDir, time.Time{}, parent.ModTime()); err != nil {
		return fmt.Errorf("%w: removing the state directory %s changed the mtime of %s and putting it back failed: %w (the coordinator needs CAP_FOWNER, or to own it)",
			ErrIncomplete, j.createdDir, parentDir, pathcheck.UnwrapPath(err))
	}
	return nil
}

// run serves one run on an open journal; see Run.
func (c *Coordinator) run(ctx context.Context, ln net.Listener, j *journal, st journalState) (leaseapi.Status, error) {
	c.restore(st)
	c.journal = j
	if c.cfg.StateDir != "" {
		c.log.Info().Str("state_dir", c.cfg.StateDir).Int("partitions", len(st.parts)).
			Bool("walk_done", st.walkDone).Msg("journal opened")
	}
	srv := c.newServer()
	serveErr := make(chan error, 1)
	go func() {
		var err error
		if c.tls != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
	}()
	c.ready.Store(true)
	c.log.Info().Str("listen", ln.Addr().String()).Str("source", c.cfg.Source).Bool("tls", c.tls != nil).Msg("serving the lease API")

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	walkErr := make(chan error, 1)
	if !st.walkDone {
		wg.Go(func() { walkErr <- c.walk(runCtx, j) })
	}
	dirsErr := make(chan error, 1)
	if !st.dirsIssued {
		wg.Go(func() {
			select {
			case <-c.q.filesSettled:
				dirsErr <- c.issueDirs(j)
			case <-runCtx.Done():
			}
		})
	}

	runErr := c.wait(ctx, walkErr, dirsErr, serveErr)
	c.ready.Store(false)
	c.q.close()
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	stop()
	cancel()
	wg.Wait()
	status := c.q.status()
	if runErr != nil {
		return status, runErr
	}
	if status.WalkErrors > 0 {
		walkErr := fmt.Errorf("%w: %w: %d (logged above as \"walk\" warnings); fix their permissions and run again",
			ErrIncomplete, ErrWalkErrors, status.WalkErrors)
		if len(status.Failed) > 0 {
			return status, errors.Join(failedError(status.Failed), walkErr)
		}
		return status, walkErr
	}
	if len(status.Failed) > 0 {
		return status, failedError(status.Failed)
	}
	return status, nil
}

// wait blocks until the run is over: finished and lingered, or an error, or ctx ends.
func (c *Coordinator) wait(ctx context.Context, walkErr, dirsErr, serveErr <-chan error) error {
	finished := c.q.finishedCh
	var linger <-chan time.Time
	for {
		select {
		case <-finished:
			finished = nil
			t := time.NewTimer(c.cfg.Linger)
			defer t.Stop()
			linger = t.C
			c.log.Info().Str("linger", c.cfg.Linger.String()).Msg("all partitions settled; telling the workers")
		case <-linger:
			return nil
		case <-c.q.allTold: // closed only after finished
			return nil
		case err := <-walkErr:
			if err != nil {
				return err
			}
		case err := <-dirsErr:
			if err != nil {
				return err
			}
		case err := <-serveErr:
			if err != nil {
				return fmt.Errorf("serve the lease API: %w", err)
			}
			return errors.New("lease API server stopped")
		case <-ctx.Done():
			return fmt.Errorf("coordinator stopped before the end: %w", ctx.Err())
		}
	}
}

// restore loads the journal's partitions into the queue. Directory partitions are only
// restored once all of them were issued; before that, issueDirs issues them again.
func (c *Coordinator) restore(st journalState) {
	for _, p := range st.parts {
		if p.kind == leaseapi.KindDirs && !st.dirsIssued {
			continue
		}
		c.q.add(p)
	}
	if st.walkDone {
		c.q.setWalkDone(st.walkErrors, st.vanished)
	}
	if st.dirsIssued {
		c.q.setDirsIssued()
	}
}

// dirFlush is how many walked directories are buffered before they go to the journal.
const dirFlush = 10000

// walkBatchMax bounds how many walk items one journal commit takes.
const walkBatchMax = 1024

// walkItem is what the walk hands to the journal writer: a partition, or directories.
type walkItem struct {
	part WalkPartition // List is nil when the item carries directories only
	dirs []string
}

// walk runs the walk and records its partitions and directories through a journal writer
// goroutine that commits whatever has queued up in one transaction (group commit): a
// slow walk gets each partition journaled and leasable at once, a fast one is not held
// back by one commit per partition.
func (c *Coordinator) walk(ctx context.Context, j *journal) error {
	items := make(chan walkItem, walkBatchMax)
	writerDone := make(chan struct{})
	var writerErr error
	var replayed int64
	go func() {
		defer close(writerDone)
		replayed, writerErr = c.journalWalk(j, items)
	}()
	send := func(it walkItem) error {
		select {
		case items <- it:
			return nil
		case <-writerDone:
			return errors.New("journal writer stopped")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var dirs []string
	var walkErrors, vanished int64
	h := WalkHandler{
		Partition: func(p WalkPartition) error {
			if len(p.List) == 0 {
				return nil
			}
			return send(walkItem{part: p})
		},
		Dir: func(rel string) error {
			dirs = append(dirs, rel)
			if len(dirs) >= dirFlush {
				err := send(walkItem{dirs: dirs})
				dirs = nil
				return err
			}
			return nil
		},
		Error: func(rel string, err error) {
			if errors.Is(err, fs.ErrNotExist) {
				// Listed by readdir, gone by lstat or open: deleted during the walk, as
				// happens on a live volume. Like rsync's "vanished" files: not an error.
				vanished++
				c.q.addVanished()
				c.log.Info().Str("path", rel).Err(err).Msg("vanished during the walk")
				return
			}
			walkErrors++
			c.q.addWalkError()
			c.log.Warn().Str("path", rel).Err(err).Msg("walk")
		},
	}
	err := c.cfg.Walk(ctx, h)
	if err == nil && len(dirs) > 0 {
		err = send(walkItem{dirs: dirs})
	}
	close(items)
	<-writerDone
	switch {
	case writerErr != nil:
		return writerErr
	case err != nil && ctx.Err() != nil:
		return nil // the run is ending anyway
	case err != nil:
		return fmt.Errorf("walk %s: %w", c.cfg.Source, err)
	}
	if err := j.setWalkDone(walkErrors, vanished); err != nil {
		return err
	}
	c.q.setWalkDone(walkErrors, vanished)
	ev := c.log.Info().Int64("walk_errors", walkErrors).Int64("vanished", vanished)
	if replayed > 0 {
		ev = ev.Int64("replayed_partitions", replayed)
	}
	ev.Msg("walk done")
	return nil
}

// journalWalk commits the walk's items in groups and queues the new partitions. It returns
// how many partitions were already in the journal (a replayed walk).
func (c *Coordinator) journalWalk(j *journal, items <-chan walkItem) (replayed int64, err error) {
	var parts []WalkPartition
	var dirs []string
	for it := range items {
		parts, dirs = parts[:0], dirs[:0]
		for n := 0; ; n++ {
			if it.part.List != nil {
				parts = append(parts, it.part)
			}
			dirs = append(dirs, it.dirs...)
			if n == walkBatchMax {
				break
			}
			var ok bool
			select {
			case it, ok = <-items:
			default:
			}
			if !ok {
				break
			}
		}
		got, err := j.addPartitions(leaseapi.KindFiles, parts, dirs)
		if err != nil {
			return replayed, err
		}
		var fresh []restoredPartition
		for _, p := range got {
			if p.isNew {
				fresh = append(fresh, p.restoredPartition)
			} else {
				replayed++
			}
		}
		c.q.add(fresh...)
	}
	return replayed, nil
}

// issueDirs adds the directory-metadata partitions, once every file partition is settled.
func (c *Coordinator) issueDirs(j *journal) error {
	var after []byte
	var n int
	for {
		list, count, last, err := j.dirChunk(after, c.cfg.DirsPerPartition)
		if err != nil {
			return err
		}
		if count == 0 {
			break
		}
		rp, _, err := j.addPartition(leaseapi.KindDirs, list, count, 0)
		if err != nil {
			return err
		}
		c.q.add(rp)
		after = last
		n++
	}
	if err := j.setDirsIssued(); err != nil {
		return err
	}
	c.q.setDirsIssued()
	c.log.Info().Int("partitions", n).Msg("directory-metadata pass issued")
	return nil
}

// failedError lists the failed partitions in one line.
func failedError(failed []leaseapi.FailedPartition) error {
	const show = 10
	var b strings.Builder
	for i, f := range failed {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(failed)-show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		msg := strings.Join(strings.Fields(f.Error), " ")
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		fmt.Fprintf(&b, "partition %d after %d attempts: %s", f.Partition, f.Attempts, msg)
	}
	return fmt.Errorf("%w: %w: %d failed: %s", ErrIncomplete, ErrPartitionsFailed, len(failed), b.String())
}
