package coordinator

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/krsync/krsync/leaseapi"
)

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

// grant is a lease just handed out: what the server needs to answer the worker.
type grant struct {
	id      int64
	kind    leaseapi.Kind
	entries int64
	bytes   int64
	attempt int
	token   string
	ttl     time.Duration
}

// queue is the partition state machine: a mutex around a small struct. Nothing in it blocks
// or does I/O while holding the mutex; long polls wait on a channel outside it, and lease
// expiry is driven by one timer per lease, set to its deadline.
type queue struct {
	ttl         time.Duration
	maxAttempts int

	mu      sync.Mutex
	parts   map[int64]*partition
	pending fifo
	leased  map[int64]*partition
	failed  []int64
	counts  leaseapi.PartitionCounts
	stats   leaseapi.Status // the byte/entry sums; Partitions and Failed are filled by status()

	walkDone   bool
	dirsIssued bool
	finished   bool
	closing    bool

	// wake is closed (and replaced) when work appears or the run ends, to end long polls.
	wake     chan struct{}
	wakeUsed bool

	filesSettled       chan struct{} // closed when the walk is done and every file partition settled
	filesSettledClosed bool
	finishedCh         chan struct{} // closed when every partition, dirs included, is done or failed

	expired int64 // leases that expired without a renewal (krsync_lease_expiries_total)

	workers    map[string]bool // worker name → told "done"
	allTold    chan struct{}   // closed once finished and every known worker was told "done"
	allToldSet bool
}

func newQueue(ttl time.Duration, maxAttempts int) *queue {
	return &queue{
		ttl:          ttl,
		maxAttempts:  maxAttempts,
		parts:        make(map[int64]*partition),
		leased:       make(map[int64]*partition),
		wake:         make(chan struct{}),
		filesSettled: make(chan struct{}),
		finishedCh:   make(chan struct{}),
		workers:      make(map[string]bool),
		allTold:      make(chan struct{}),
		stats:        leaseapi.Status{StartedAt: time.Now().UTC()},
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
	q.counts.Total++
	if r.kind == leaseapi.KindFiles {
		q.stats.EntriesWalked = addSaturating(q.stats.EntriesWalked, r.entries)
		q.stats.BytesWalked = addSaturating(q.stats.BytesWalked, r.bytes)
	}
	if r.done {
		p.state = stateDone
		q.counts.Done++
		q.countDoneLocked(p, r.stats)
		return
	}
	q.pushPendingLocked(p)
}

// addWalkError counts one non-fatal walk error.
func (q *queue) addWalkError() {
	q.mu.Lock()
	q.stats.WalkErrors++
	q.mu.Unlock()
}

// addVanished counts one entry that vanished during the walk.
func (q *queue) addVanished() {
	q.mu.Lock()
	q.stats.Vanished++
	q.mu.Unlock()
}

// setWalkDone records that the walk emitted its last partition.
func (q *queue) setWalkDone(walkErrors, vanished int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.walkDone = true
	q.stats.WalkDone = true
	q.stats.WalkErrors = max(q.stats.WalkErrors, walkErrors)
	q.stats.Vanished = max(q.stats.Vanished, vanished)
	q.checkPhaseLocked()
}

// setDirsIssued records that every directory-metadata partition has been added.
func (q *queue) setDirsIssued() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dirsIssued = true
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
	if q.finished {
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
		q.wakeUsed = true
		return grant{}, leaseapi.LeaseWait, q.wake
	}
	q.counts.Pending--
	q.counts.Leased++
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
	q.counts.Done++
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
	q.expired++
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
	q.counts.Failed++
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
	q.counts.Leased--
	p.worker = ""
}

func (q *queue) pushPendingLocked(p *partition) {
	p.state = statePending
	q.pending.push(p.id)
	q.counts.Pending++
	q.wakeLocked()
}

func (q *queue) countDoneLocked(p *partition, stats leaseapi.TransferStats) {
	if p.kind == leaseapi.KindFiles {
		q.stats.EntriesDone = addSaturating(q.stats.EntriesDone, p.entries)
		q.stats.BytesDone = addSaturating(q.stats.BytesDone, p.bytes)
		q.stats.Unchanged = addSaturating(q.stats.Unchanged, stats.Unchanged)
	}
	q.stats.FilesTransferred = addSaturating(q.stats.FilesTransferred, stats.FilesTransferred)
	q.stats.BytesTransferred = addSaturating(q.stats.BytesTransferred, stats.BytesTransferred)
	q.stats.Deleted = addSaturating(q.stats.Deleted, max(stats.Deleted, 0))
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
	if q.wakeUsed {
		close(q.wake)
		q.wake = make(chan struct{})
		q.wakeUsed = false
	}
}

// checkPhaseLocked moves the run on when nothing is pending or leased: to the directory
// pass after the walk, to finished after the directory pass.
func (q *queue) checkPhaseLocked() {
	if !q.walkDone || q.counts.Pending > 0 || q.counts.Leased > 0 {
		return
	}
	if !q.dirsIssued {
		if !q.filesSettledClosed {
			q.filesSettledClosed = true
			close(q.filesSettled)
		}
		return
	}
	if !q.finished {
		q.finished = true
		q.stats.Finished = true
		close(q.finishedCh)
		q.wakeUsed = true
		q.wakeLocked()
		q.checkAllToldLocked()
	}
}

// checkAllToldLocked closes allTold once finished and every known worker was told "done".
func (q *queue) checkAllToldLocked() {
	if !q.finished || q.allToldSet || len(q.workers) == 0 {
		return
	}
	for _, told := range q.workers {
		if !told {
			return
		}
	}
	q.allToldSet = true
	close(q.allTold)
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
	q.wakeUsed = true
	q.wakeLocked()
}

// status is a snapshot of the counts and sums.
func (q *queue) status() leaseapi.Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	s.Partitions = q.counts
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
