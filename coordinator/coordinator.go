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

// Coordinator hands out the partitions of one source tree to workers. Create it with New
// and run it once with Run.
type Coordinator struct {
	cfg   Config
	log   zerolog.Logger
	tls   *tls.Config
	polls chan struct{} // long-poll semaphore
	ready atomic.Bool
	// leases is the lease state machine and its journal (lease.go): every change of a
	// partition goes through it; the rest of the coordinator reads its queue's status
	// and phase signals.
	leases *ledger
	// metrics are served at /metrics (metrics.go).
	metrics *metrics
}

// Status is a snapshot of the run's progress.
func (c *Coordinator) Status() leaseapi.Status { return c.leases.status() }

// ReleaseWorker hands back every lease held by a worker that is gone (a deleted, evicted or
// failed pod) without counting it as an attempt, and forgets the worker. It returns how many.
func (c *Coordinator) ReleaseWorker(name string) int { return c.leases.releaseWorker(name) }

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
		return c.leases.status(), err
	}
	if st.interrupted() {
		// The source may have changed since that run walked it: a file it copied may be
		// newer now, a directory it listed may hold new entries. Its finished partitions
		// prove nothing about today's source, so the run walks afresh; what that run
		// copied is not copied again all the same (the walk's comparison with the
		// destination leaves it out, or the workers' quick check skips it).
		if err := j.reset(); err != nil {
			j.closeGuarded()
			ln.Close()
			return c.leases.status(), err
		}
		c.log.Info().Int("partitions", len(st.parts)).Bool("walk_done", st.walkDone).
			Msg("the journal of an interrupted run: walking the source afresh (what it copied is not copied again)")
		st = journalState{}
	}
	switch {
	case aside != "" && stateInDest:
		c.log.Warn().Str("removed", aside).Msg("the journal was corrupt: removed (it lies in the destination, which must end equal to the source), walking afresh (rsync skips what is already copied)")
	case aside != "":
		c.log.Warn().Str("set_aside", aside).Msg("the journal was corrupt: set aside, walking afresh (rsync skips what is already copied); remove the file once you no longer need it")
	}
	status, err := c.run(ctx, ln, j, st)
	ended := err == nil || errors.Is(err, ErrIncomplete)
	if cerr := c.endJournal(j, ended, stateInDest); cerr != nil {
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
// krsync created it and it is empty; its parent's mtime is put back. In the destination
// (the destination root's, set by the directory-metadata pass, for /dest/.krsync-state) a
// failure to put it back makes the run incomplete: the destination would not equal the
// source. Elsewhere (krsync local's default under ~/.local/state/krsync) it is only logged.
func (c *Coordinator) endJournal(j *journal, ended, stateInDest bool) error {
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
	if err != nil && stateInDest {
		return fmt.Errorf("%w: the state directory's parent %s: %w", ErrIncomplete, parentDir, err)
	}
	// Only when empty: a token file or anything the user put there stays.
	if err := os.Remove(j.createdDir); err != nil {
		c.log.Info().Err(err).Str("state_dir", j.createdDir).Msg("state directory kept: not empty")
		return nil
	}
	if parent == nil {
		return nil
	}
	if err := os.Chtimes(parentDir, time.Time{}, parent.ModTime()); err != nil {
		if !stateInDest {
			c.log.Debug().Err(err).Str("dir", parentDir).Msg("could not put back the mtime of the state directory's parent")
			return nil
		}
		return fmt.Errorf("%w: removing the state directory %s changed the mtime of %s and putting it back failed: %w (the coordinator needs CAP_FOWNER, or to own it)",
			ErrIncomplete, j.createdDir, parentDir, pathcheck.UnwrapPath(err))
	}
	return nil
}

// run serves one run on an open journal; see Run.
func (c *Coordinator) run(ctx context.Context, ln net.Listener, j *journal, st journalState) (leaseapi.Status, error) {
	c.leases.open(j, st)
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
		wg.Go(func() { walkErr <- c.walk(runCtx) })
	}
	dirsErr := make(chan error, 1)
	if !st.dirsIssued {
		wg.Go(func() {
			select {
			case <-c.leases.q.filesSettled.done():
				dirsErr <- c.issueDirs()
			case <-runCtx.Done():
			}
		})
	}

	verifyErr := make(chan error, 1)
	if c.leases.verify != nil {
		wg.Go(func() {
			select {
			case <-c.leases.q.dirsSettled.done():
				verifyErr <- c.issueVerify()
			case <-runCtx.Done():
			}
		})
	}

	runErr := c.wait(ctx, walkErr, dirsErr, verifyErr, serveErr)
	c.ready.Store(false)
	c.leases.close()
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	stop()
	cancel()
	wg.Wait()
	if runErr == nil {
		c.leases.verify.judge(c.leases.q.snapshot().failed == 0)
	}
	status := c.leases.status()
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
func (c *Coordinator) wait(ctx context.Context, walkErr, dirsErr, verifyErr, serveErr <-chan error) error {
	finished := c.leases.q.finished.done()
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
		case <-c.leases.q.allTold.done(): // closed only after finished
			return nil
		case err := <-walkErr:
			if err != nil {
				return err
			}
		case err := <-dirsErr:
			if err != nil {
				return err
			}
		case err := <-verifyErr:
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
