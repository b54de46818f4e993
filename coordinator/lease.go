package coordinator

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/krsync/krsync/leaseapi"
)

// This file is the lease state machine, one cohesive thing: the ledger, through which every
// change of a partition's state goes together with its journal record, its log line and its
// metrics; the queue, the in-memory states and counters behind it; and their small types.
// server.go only decodes requests, calls the ledger and encodes its answers.

// partState is where a partition is in its life:
//
//	pending → leased(token, worker, deadline, attempt) → done
//	                                                   → pending (expiry, retryable fail, release)
//	                                                   → failed  (attempts exhausted, non-retryable fail)
type partState uint8

const (
	statePending partState = iota
	stateLeased
	stateDone
	stateFailed
)

func (s partState) String() string {
	switch s {
	case statePending:
		return "pending"
	case stateLeased:
		return "leased"
	case stateDone:
		return "done"
	case stateFailed:
		return "failed"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ledger is the lease state machine with its journal: every state change is made in the
// queue first (under its mutex, no I/O), then recorded in the journal (outside it), logged
// and measured, here and nowhere else. The journal is set by open, before the API serves.
type ledger struct {
	q       *queue
	journal *journal
	log     zerolog.Logger
	metrics *metrics
	// extra is what every lease of the run carries besides its partition (TempDir,
	// SourceCheck, Mirror).
	extra leaseapi.Lease
	// verify is the comparison of a --verify run (verifyleases.go), nil without one.
	verify *verifyPass
}

// open loads a journal's partitions and phases into the queue and records every change in
// it from now on. Directory partitions are only restored once all of them were issued;
// before that, addDirPartitions issues them again.
func (l *ledger) open(j *journal, st journalState) {
	l.journal = j
	for _, p := range st.parts {
		if p.kind == leaseapi.KindDirs && !st.dirsIssued {
			continue
		}
		l.q.add(p)
	}
	if st.walkDone {
		l.q.setWalkDone(st.walk)
	}
	if st.dirsIssued {
		l.q.setDirsIssued()
	}
}

// addWalked records a group of the walk's file partitions and directories in one commit and
// queues the partitions that are new; it returns how many the journal already held (a
// replayed walk).
func (l *ledger) addWalked(parts []WalkPartition, dirs []string) (replayed int64, err error) {
	got, err := l.journal.addPartitions(leaseapi.KindFiles, parts, dirs)
	if err != nil {
		return 0, err
	}
	fresh := make([]restoredPartition, 0, len(got))
	for _, p := range got {
		if p.isNew {
			fresh = append(fresh, p.restoredPartition)
		} else {
			replayed++
		}
	}
	l.q.add(fresh...)
	return replayed, nil
}

// addDirPartitions records and queues partitions of kind over every directory the walk kept,
// in the journal's order (parents first), perPartition at a time; it returns how many. A
// second pass (a restarted run) finds the same lists in the journal and adds them again.
func (l *ledger) addDirPartitions(kind leaseapi.Kind, perPartition int) (int, error) {
	var after []byte
	var n int
	for {
		list, count, last, err := l.journal.dirChunk(after, perPartition)
		if err != nil {
			return n, err
		}
		if count == 0 {
			return n, nil
		}
		rp, _, err := l.journal.addPartition(kind, list, count, 0)
		if err != nil {
			return n, err
		}
		l.q.add(rp)
		after = last
		n++
	}
}

// addWalkError counts an entry the walk could not read; addVanished one it found deleted.
// Both are journaled with the end of the walk (walkDone).
func (l *ledger) addWalkError()               { l.q.addWalkError() }
func (l *ledger) addVanished()                { l.q.addVanished() }
func (l *ledger) addUnchanged(n, bytes int64) { l.q.addUnchanged(n, bytes) }

// walkDone records that the walk emitted its last partition.
func (l *ledger) walkDone(t walkTotals) error {
	if err := l.journal.setWalkDone(t); err != nil {
		return err
	}
	l.q.setWalkDone(t)
	return nil
}

// dirsIssued records that every directory-metadata partition has been added.
func (l *ledger) dirsIssued() error {
	if err := l.journal.setDirsIssued(); err != nil {
		return err
	}
	l.q.setDirsIssued()
	return nil
}

// lease hands worker a partition with its list, waiting up to wait for one (see
// queue.lease). ctx is the request's: when it ends while the lease is being granted, the
// lease goes back to the queue and ctx's error is returned.
func (l *ledger) lease(ctx context.Context, worker string, wait time.Duration) (leaseapi.LeaseResponse, error) {
	l.metrics.seen(worker)
	g, state := l.q.lease(ctx, worker, wait)
	if state != leaseapi.LeaseGranted {
		return leaseapi.LeaseResponse{State: state}, nil
	}
	if err := ctx.Err(); err != nil {
		l.q.release(g.id, g.token) // the worker hung up while its lease was being granted
		return leaseapi.LeaseResponse{}, err
	}
	var list []byte
	var err error
	if g.kind == leaseapi.KindVerify {
		list, err = l.verify.list(l.journal, g.id)
	} else {
		list, err = l.journal.list(g.id)
	}
	if err != nil {
		l.q.release(g.id, g.token)
		l.log.Error().Err(err).Int64("partition", g.id).Msg("lease: reading the list")
		return leaseapi.LeaseResponse{}, fmt.Errorf("reading the partition's list: %w", err)
	}
	l.log.Debug().Int64("partition", g.id).Int("attempt", g.attempt).Str("worker", worker).Msg("leased")
	l.metrics.granted(g.id, g.token, g.attempt)
	lease := l.extra
	lease.Partition, lease.Attempt, lease.Token, lease.TTLMS = g.id, g.attempt, g.token, g.ttl.Milliseconds()
	lease.Kind, lease.List, lease.Entries, lease.Bytes = g.kind, list, g.entries, g.bytes
	// The directory-metadata partition of the root removes the temporary directory: every
	// file partition has settled by then, and the root's mtime is set after.
	lease.RemoveTempDir = g.kind == leaseapi.KindDirs && holdsRoot(list)
	if g.kind == leaseapi.KindVerify {
		lease.Mirror, lease.Verify = nil, &l.verify.spec
	}
	return leaseapi.LeaseResponse{State: leaseapi.LeaseGranted, Lease: &lease}, nil
}

// renew extends the lease on id held with token by one TTL.
func (l *ledger) renew(id int64, token string) (time.Duration, error) {
	return l.q.renew(id, token)
}

// complete marks id done and records it. A repeated completion with the completing token
// is accepted again without counting or recording it twice.
func (l *ledger) complete(id int64, token string, stats leaseapi.TransferStats) error {
	if l.verify.holds(id) {
		return l.completeVerify(id, token, stats)
	}
	changed, err := l.q.complete(id, token, stats)
	if err != nil || !changed {
		return err
	}
	l.metrics.settled(id, token, "done", strconv.Itoa(stats.ExitCode))
	if err := l.journal.setState(id, stateRecord{state: stateDone, files: stats.FilesTransferred, bytes: stats.BytesTransferred}); err != nil {
		l.log.Error().Err(err).Msg("complete")
		return err
	}
	ev := l.log.Debug()
	if len(stats.Warnings) > 0 {
		ev = l.log.Warn().Strs("warnings", stats.Warnings[:min(len(stats.Warnings), 10)])
	}
	ev.Int64("partition", id).Int64("files_transferred", stats.FilesTransferred).Msg("partition done")
	return nil
}

// fail reports the lease on id as failed: pending again while attempts remain and the error
// is retryable, otherwise failed for good and recorded so.
func (l *ledger) fail(id int64, req leaseapi.FailRequest) error {
	failedNow, err := l.q.fail(id, req)
	if err != nil {
		return err
	}
	verifyLease := l.verify.holds(id)
	if verifyLease {
		l.metrics.leaseSettled(id, req.Token, "failed") // no rsync ran
	} else {
		l.metrics.settled(id, req.Token, "failed", exitCodeLabel(req.ExitCode))
	}
	ev := l.log.Warn()
	if failedNow {
		ev = l.log.Error()
	}
	ev.Int64("partition", id).Bool("retryable", req.Retryable).Bool("given_up", failedNow).
		Int("failed_paths", len(req.FailedPaths)).Str("error", req.Error).Msg("partition failed")
	if !failedNow || verifyLease { // verify leases are not journaled
		return nil
	}
	if err := l.journal.setState(id, stateRecord{state: stateFailed, err: req.Error}); err != nil {
		l.log.Error().Err(err).Msg("fail")
		return err
	}
	return nil
}

// releaseWorker hands back every lease of a worker that is gone, without counting them as
// attempts, and forgets the worker; it returns how many. Nothing is journaled: a leased
// partition is pending again after a restart anyway.
func (l *ledger) releaseWorker(name string) int {
	n := l.q.releaseWorker(name)
	if n > 0 {
		l.log.Info().Str("worker", name).Int("released", n).Msg("worker gone: leases handed back")
	}
	return n
}

// status is a snapshot of the run's progress, as the API answers it.
func (l *ledger) status() leaseapi.Status {
	s := l.q.status()
	s.Verify = l.verify.status()
	return s
}

// close ends the queue at the end of the run: long polls return, lease timers stop.
func (l *ledger) close() { l.q.close() }

// holdsRoot says whether a NUL-terminated list names the root ".".
func holdsRoot(list []byte) bool {
	return bytes.HasPrefix(list, []byte(".\x00")) || bytes.Contains(list, []byte("\x00.\x00"))
}

// maxFailedPaths bounds the failed paths kept per partition for the status answer.
const maxFailedPaths = 100

// maxListedFailures bounds the failed partitions listed in a status (the count is exact).
const maxListedFailures = 1000

// maxKnownWorkers bounds the worker names remembered for the end-of-run "done" answers, so
// that a client inventing names cannot grow memory without bound.
const maxKnownWorkers = 1 << 16

// partition is the in-memory record of one partition. Its file list lives in the journal.
type partition struct {
	id      int64
	kind    leaseapi.Kind
	entries int64
	bytes   int64

	state    partState
	attempts int    // leases handed out for it in this run
	token    string // the current lease's token when leased; the completing token when done
	worker   string
	deadline time.Time
	timer    *time.Timer // expires the current lease at deadline

	lastErr     string
	failedPaths []string
}

// grant is a lease just handed out: what the ledger needs to answer the worker.
type grant struct {
	id      int64
	kind    leaseapi.Kind
	entries int64
	bytes   int64
	attempt int
	token   string
	ttl     time.Duration
}

// counters are the queue's numbers: partitions by state, the sums of the walk and of the
// workers' reports (saturating, see addSaturating), and the phases reached. status turns
// them into the wire's leaseapi.Status; the metrics read them as they are.
type counters struct {
	total, pending, leased, done, failed int64 // partitions

	// Walked and done count the entries of file partitions and those the walk left out as
	// unchanged (walkUnchanged, Config.CompareDest), which are in no partition.
	entriesWalked, bytesWalked int64
	entriesDone, bytesDone     int64
	filesTransferred           int64 // rsync --stats, as the workers reported them
	bytesTransferred           int64
	unchanged                  int64 // entries left out of rsync: by the walk, by the workers
	walkUnchanged              int64 // entries the walk left out
	walkUnchangedBytes         int64
	deleted                    int64 // destination entries --mirror deleted
	walkErrors, vanished       int64
	vanishedListed             int64 // entries of done partitions gone when rsync looked
	expired                    int64 // leases that expired without a renewal

	walkDone, finished bool
}

// queue is the partition state machine: a mutex around a small struct. Nothing in it blocks
// or does I/O while holding the mutex; long polls wait on a channel outside it, and lease
// expiry is driven by one timer per lease, set to its deadline.
type queue struct {
	ttl         time.Duration
	maxAttempts int
	startedAt   time.Time
	mirror      bool // the run's --mirror and --dry-run, for the status
	dryRun      bool

	mu      sync.Mutex
	parts   map[int64]*partition
	pending fifo
	leased  map[int64]*partition
	failed  []int64
	n       counters

	dirsIssued bool
	// verifyWanted: a --verify run, whose verify leases come after the directory pass;
	// verifyIssued once they are all added.
	verifyWanted, verifyIssued bool
	closing                    bool

	// wake is closed and replaced when work appears or the run ends, to end the long polls
	// waiting on it; polled says that one does (else there is nothing to end).
	wake   *signal
	polled bool

	filesSettled *signal // the walk is done and every file (and prune) partition settled
	dirsSettled  *signal // and the directory pass too (--verify: time for the verify leases)
	finished     *signal // every partition, dirs included, is done or failed
	allTold      *signal // finished, and every known worker was told "done"

	workers map[string]bool // worker name → told "done"
}

func newQueue(ttl time.Duration, maxAttempts int, mirror, dryRun, verify bool) *queue {
	return &queue{
		verifyWanted: verify,
		dirsSettled:  newSignal(),
		ttl:          ttl,
		maxAttempts:  maxAttempts,
		startedAt:    time.Now().UTC(),
		mirror:       mirror,
		dryRun:       dryRun,
		parts:        make(map[int64]*partition),
		leased:       make(map[int64]*partition),
		wake:         newSignal(),
		filesSettled: newSignal(),
		finished:     newSignal(),
		allTold:      newSignal(),
		workers:      make(map[string]bool),
	}
}

// restoredPartition is a partition read back from the journal.
type restoredPartition struct {
	id      int64
	kind    leaseapi.Kind
	entries int64
	bytes   int64
	done    bool
	stats   leaseapi.TransferStats
}

// add puts new partitions in the queue: pending, or done when the journal says so.
func (q *queue) add(parts ...restoredPartition) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range parts {
		q.addLocked(r)
	}
	q.checkPhaseLocked()
}

func (q *queue) addLocked(r restoredPartition) {
	if _, ok := q.parts[r.id]; ok {
		return
	}
	p := &partition{id: r.id, kind: r.kind, entries: r.entries, bytes: r.bytes}
	q.parts[r.id] = p
	q.n.total++
	if r.kind == leaseapi.KindFiles {
		q.n.entriesWalked = addSaturating(q.n.entriesWalked, r.entries)
		q.n.bytesWalked = addSaturating(q.n.bytesWalked, r.bytes)
	}
	if r.done {
		p.state = stateDone
		q.n.done++
		q.countDoneLocked(p, r.stats)
		return
	}
	q.pushPendingLocked(p)
}

// addWalkError counts one non-fatal walk error.
func (q *queue) addWalkError() {
	q.mu.Lock()
	q.n.walkErrors++
	q.mu.Unlock()
}

// addVanished counts one entry that vanished during the walk (those gone when rsync looked
// come with their partition's completion: countDoneLocked).
func (q *queue) addVanished() {
	q.mu.Lock()
	q.n.vanished++
	q.mu.Unlock()
}

// setWalkDone records that the walk emitted its last partition.
func (q *queue) setWalkDone(t walkTotals) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n.walkDone = true
	q.n.walkErrors = max(q.n.walkErrors, t.errors)
	q.n.vanished = max(q.n.vanished, t.vanished)
	// A journal read back after the walk: what the walk left out is counted from it.
	q.addUnchangedLocked(t.unchanged-q.n.walkUnchanged, t.unchangedBytes-q.n.walkUnchangedBytes)
	q.checkPhaseLocked()
}

// walkTotals are what a walk counted besides its partitions, journaled when it ends.
type walkTotals struct {
	errors, vanished int64
	// unchanged entries (and their bytes) the walk left out of every partition because the
	// destination already held them (Config.CompareDest).
	unchanged, unchangedBytes int64
}

// addUnchanged counts entries the walk left out, already equal in the destination: walked,
// done and unchanged at once.
func (q *queue) addUnchanged(n, bytes int64) {
	q.mu.Lock()
	q.addUnchangedLocked(n, bytes)
	q.mu.Unlock()
}

func (q *queue) addUnchangedLocked(n, bytes int64) {
	if n <= 0 {
		return
	}
	bytes = max(bytes, 0)
	q.n.walkUnchanged = addSaturating(q.n.walkUnchanged, n)
	q.n.walkUnchangedBytes = addSaturating(q.n.walkUnchangedBytes, bytes)
	q.n.entriesWalked = addSaturating(q.n.entriesWalked, n)
	q.n.bytesWalked = addSaturating(q.n.bytesWalked, bytes)
	q.n.entriesDone = addSaturating(q.n.entriesDone, n)
	q.n.bytesDone = addSaturating(q.n.bytesDone, bytes)
	q.n.unchanged = addSaturating(q.n.unchanged, n)
}

// setDirsIssued records that every directory-metadata partition has been added.
func (q *queue) setDirsIssued() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dirsIssued = true
	q.checkPhaseLocked()
}

// setVerifyIssued records that every verify lease has been added.
func (q *queue) setVerifyIssued() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.verifyIssued = true
	q.checkPhaseLocked()
}

// lease hands a pending partition to worker, waiting up to wait for one to appear while the
// work is not finished. The answer is granted (with g), wait, or done.
func (q *queue) lease(ctx context.Context, worker string, wait time.Duration) (grant, leaseapi.LeaseState) {
	var timer *time.Timer
	for {
		g, state, wake := q.tryLease(worker)
		if state != leaseapi.LeaseWait || wake == nil || wait <= 0 {
			return g, state
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-timer.C:
			return grant{}, leaseapi.LeaseWait
		case <-ctx.Done():
			return grant{}, leaseapi.LeaseWait
		}
	}
}

// tryLease is one non-blocking attempt; on wait it returns the channel that signals news
// (nil when the queue is closing and the caller must not wait).
func (q *queue) tryLease(worker string) (grant, leaseapi.LeaseState, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, known := q.workers[worker]; !known && len(q.workers) < maxKnownWorkers {
		q.workers[worker] = false
	}
	if q.n.finished {
		if _, known := q.workers[worker]; known {
			q.workers[worker] = true
		}
		q.checkAllToldLocked()
		return grant{}, leaseapi.LeaseDone, nil
	}
	if q.closing {
		return grant{}, leaseapi.LeaseWait, nil
	}
	p := q.pending.pop(q.parts)
	if p == nil {
		q.polled = true
		return grant{}, leaseapi.LeaseWait, q.wake.done()
	}
	q.n.pending--
	q.n.leased++
	p.state = stateLeased
	p.attempts++
	p.token = rand.Text()
	p.worker = worker
	p.deadline = time.Now().Add(q.ttl)
	id, token := p.id, p.token
	p.timer = time.AfterFunc(q.ttl, func() { q.expire(id, token) })
	q.leased[p.id] = p
	return grant{
		id: p.id, kind: p.kind, entries: p.entries, bytes: p.bytes,
		attempt: p.attempts, token: p.token, ttl: q.ttl,
	}, leaseapi.LeaseGranted, nil
}

// leasedLocked returns the partition id leased under token, or the reason it is not.
func (q *queue) leasedLocked(id int64, token string) (*partition, error) {
	p := q.parts[id]
	if p == nil {
		return nil, fmt.Errorf("partition %d: %w", id, leaseapi.ErrUnknownPartition)
	}
	if p.state != stateLeased || p.token != token {
		return nil, fmt.Errorf("partition %d is %s under another lease: %w", id, p.state, leaseapi.ErrStaleLease)
	}
	return p, nil
}

// renew extends the lease on id held with token by one TTL.
func (q *queue) renew(id int64, token string) (time.Duration, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, err := q.leasedLocked(id, token)
	if err != nil {
		return 0, err
	}
	p.deadline = time.Now().Add(q.ttl)
	p.timer.Reset(q.ttl)
	return q.ttl, nil
}

// complete marks id done. A repeated completion with the token that completed it is
// accepted again without counting twice (changed is false); any other token is stale.
func (q *queue) complete(id int64, token string, stats leaseapi.TransferStats) (changed bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p := q.parts[id]; p != nil && p.state == stateDone && token != "" && p.token == token {
		return false, nil
	}
	p, err := q.leasedLocked(id, token)
	if err != nil {
		return false, err
	}
	q.endLeaseLocked(p)
	p.state = stateDone
	p.token = token
	p.lastErr, p.failedPaths = "", nil
	q.n.done++
	q.countDoneLocked(p, stats)
	q.checkPhaseLocked()
	return true, nil
}

// fail reports the lease on id as failed. It returns true when the partition is now failed
// for good (non-retryable, or its last attempt).
func (q *queue) fail(id int64, req leaseapi.FailRequest) (failedNow bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, err := q.leasedLocked(id, req.Token)
	if err != nil {
		return false, err
	}
	return q.settleAttemptLocked(p, req.Error, req.FailedPaths, req.Retryable), nil
}

// release hands the lease on id back without counting it as an attempt (the coordinator
// could not send the list, or the worker is gone).
func (q *queue) release(id int64, token string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p, err := q.leasedLocked(id, token); err == nil {
		p.attempts--
		q.settleAttemptLocked(p, "", nil, true)
	}
}

// releaseWorker hands back every lease held by worker and forgets it; it returns how many.
func (q *queue) releaseWorker(worker string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	var held []*partition
	for _, p := range q.leased {
		if p.worker == worker {
			held = append(held, p)
		}
	}
	slices.SortFunc(held, func(a, b *partition) int { return cmp.Compare(a.id, b.id) })
	for _, p := range held {
		p.attempts--
		q.settleAttemptLocked(p, "", nil, true)
	}
	delete(q.workers, worker)
	q.checkAllToldLocked()
	return len(held)
}

// expire ends the lease on id under token if its deadline passed without a renewal.
func (q *queue) expire(id int64, token string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.parts[id]
	if q.closing || p == nil || p.state != stateLeased || p.token != token {
		return
	}
	if time.Now().Before(p.deadline) {
		return // renewed after the timer fired; Reset has re-armed it
	}
	q.n.expired++
	q.settleAttemptLocked(p, fmt.Sprintf("lease expired: worker %s did not renew within %s", p.worker, q.ttl), nil, true)
}

// settleAttemptLocked ends a lease that did not complete: back to pending while attempts
// remain and the error is retryable, failed otherwise. It returns true when failed.
func (q *queue) settleAttemptLocked(p *partition, errMsg string, failedPaths []string, retryable bool) bool {
	q.endLeaseLocked(p)
	p.token = ""
	if errMsg != "" {
		p.lastErr = errMsg
		if len(failedPaths) > maxFailedPaths {
			failedPaths = failedPaths[:maxFailedPaths]
		}
		p.failedPaths = slices.Clone(failedPaths)
	}
	if retryable && p.attempts < q.maxAttempts {
		q.pushPendingLocked(p)
		q.checkPhaseLocked()
		return false
	}
	p.state = stateFailed
	q.n.failed++
	q.failed = append(q.failed, p.id)
	q.checkPhaseLocked()
	return true
}

// endLeaseLocked takes p out of the leased set.
func (q *queue) endLeaseLocked(p *partition) {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	delete(q.leased, p.id)
	q.n.leased--
	p.worker = ""
}

func (q *queue) pushPendingLocked(p *partition) {
	p.state = statePending
	q.pending.push(p.id)
	q.n.pending++
	q.wakeLocked()
}

func (q *queue) countDoneLocked(p *partition, stats leaseapi.TransferStats) {
	if p.kind == leaseapi.KindFiles {
		// Entries gone from the source when rsync looked are not in the destination: they
		// count as vanished, not as copied (walked = copied + vanished once all is done).
		vanished := min(max(stats.Vanished, 0), p.entries)
		q.n.entriesDone = addSaturating(q.n.entriesDone, p.entries-vanished)
		q.n.bytesDone = addSaturating(q.n.bytesDone, p.bytes)
		q.n.unchanged = addSaturating(q.n.unchanged, stats.Unchanged)
		q.n.vanishedListed = addSaturating(q.n.vanishedListed, vanished)
	}
	q.n.filesTransferred = addSaturating(q.n.filesTransferred, stats.FilesTransferred)
	q.n.bytesTransferred = addSaturating(q.n.bytesTransferred, stats.BytesTransferred)
	q.n.deleted = addSaturating(q.n.deleted, max(stats.Deleted, 0))
}

// addSaturating adds two non-negative counters, stopping at math.MaxInt64 instead of
// wrapping into negative numbers (a worker reports whatever rsync printed).
func addSaturating(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// wakeLocked ends the current long polls, if any waits.
func (q *queue) wakeLocked() {
	if q.polled {
		q.wake.close()
		q.wake = newSignal()
		q.polled = false
	}
}

// checkPhaseLocked moves the run on when nothing is pending or leased: to the directory
// pass after the walk, to the verify leases (--verify) after the directory pass, to
// finished after the last of them.
func (q *queue) checkPhaseLocked() {
	if !q.n.walkDone || q.n.pending > 0 || q.n.leased > 0 {
		return
	}
	if !q.dirsIssued {
		q.filesSettled.close()
		return
	}
	if q.verifyWanted && !q.verifyIssued {
		q.dirsSettled.close()
		return
	}
	if !q.n.finished {
		q.n.finished = true
		q.finished.close()
		q.polled = true
		q.wakeLocked()
		q.checkAllToldLocked()
	}
}

// checkAllToldLocked closes allTold once finished and every known worker was told "done".
func (q *queue) checkAllToldLocked() {
	if !q.n.finished || len(q.workers) == 0 {
		return
	}
	for _, told := range q.workers {
		if !told {
			return
		}
	}
	q.allTold.close()
}

// close ends the queue: long polls return, timers stop, no new waits start.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closing = true
	for _, p := range q.leased {
		if p.timer != nil {
			p.timer.Stop()
		}
	}
	q.polled = true
	q.wakeLocked()
}

// snapshot is a copy of the counters.
func (q *queue) snapshot() counters {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// leaseHolders returns the worker of every live lease (a worker once per lease).
func (q *queue) leaseHolders() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	holders := make([]string, 0, len(q.leased))
	seen := make(map[string]bool, len(q.leased))
	for _, p := range q.leased {
		if !seen[p.worker] {
			seen[p.worker] = true
			holders = append(holders, p.worker)
		}
	}
	return holders
}

// status is a snapshot of the counts and sums in the API's terms, with the failed
// partitions (at most maxListedFailures of them).
func (q *queue) status() leaseapi.Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	s := leaseapi.Status{
		Partitions:       leaseapi.PartitionCounts{Pending: n.pending, Leased: n.leased, Done: n.done, Failed: n.failed, Total: n.total},
		EntriesWalked:    n.entriesWalked,
		BytesWalked:      n.bytesWalked,
		EntriesDone:      n.entriesDone,
		BytesDone:        n.bytesDone,
		FilesTransferred: n.filesTransferred,
		BytesTransferred: n.bytesTransferred,
		WalkErrors:       n.walkErrors,
		Vanished:         addSaturating(n.vanished, n.vanishedListed),
		VanishedListed:   n.vanishedListed,
		Deleted:          n.deleted,
		Unchanged:        n.unchanged,
		Mirror:           q.mirror,
		DryRun:           q.dryRun,
		WalkDone:         n.walkDone,
		Finished:         n.finished,
		StartedAt:        q.startedAt,
	}
	s.Failed = make([]leaseapi.FailedPartition, 0, min(len(q.failed), maxListedFailures))
	for _, id := range q.failed[:min(len(q.failed), maxListedFailures)] {
		p := q.parts[id]
		s.Failed = append(s.Failed, leaseapi.FailedPartition{
			Partition: p.id, Attempts: p.attempts, Error: p.lastErr, FailedPaths: slices.Clone(p.failedPaths),
		})
	}
	slices.SortFunc(s.Failed, func(a, b leaseapi.FailedPartition) int { return cmp.Compare(a.Partition, b.Partition) })
	if len(s.Failed) == 0 {
		s.Failed = nil
	}
	return s
}

// signal is closed once, by whoever gets there first; done's channel is closed then.
type signal struct {
	once sync.Once
	ch   chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) close()                { s.once.Do(func() { close(s.ch) }) }
func (s *signal) done() <-chan struct{} { return s.ch }

// fifo is a queue of partition ids; a slice with a moving head, compacted as it drains.
type fifo struct {
	ids  []int64
	head int
}

func (f *fifo) push(id int64) { f.ids = append(f.ids, id) }

// pop returns the next pending partition, or nil.
func (f *fifo) pop(parts map[int64]*partition) *partition {
	for f.head < len(f.ids) {
		id := f.ids[f.head]
		f.head++
		if f.head > 1024 && f.head*2 > len(f.ids) {
			f.ids = append(f.ids[:0], f.ids[f.head:]...)
			f.head = 0
		}
		if p := parts[id]; p != nil && p.state == statePending {
			return p
		}
	}
	return nil
}
