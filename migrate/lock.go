package migrate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// ErrInUse says another krsync migrate is working on one of the claims right now.
var ErrInUse = errors.New("in use by another krsync migrate")

// ErrLockLost says the migration could not keep its claims' locks (another run took them
// over, or the API server could not be reached for longer than a lock lasts); it stopped
// so that two runs never act at once.
var ErrLockLost = errors.New("lost the lock on the claims")

// LockTiming is how long a claim's lock lasts without renewal, and how often its holder
// renews it. A run killed without releasing its locks holds them for Duration more.
type LockTiming struct {
	Duration, Renew time.Duration
}

// DefaultLockTiming is client-go's leader-election timing (LeaseDuration, RetryPeriod): a
// second run learns within Renew that the first still runs.
var DefaultLockTiming = LockTiming{Duration: 15 * time.Second, Renew: 2 * time.Second}

// AnnoLockClaim names the claim a lock's Lease stands for (its name is a hash).
const AnnoLockClaim = "krsync.io/migrate-claim"

// claimLock is the Lease (coordination.k8s.io) through which one krsync migrate at a time
// works on a claim: a second run on the same source or new claim, or a --rollback while a
// migration runs, is refused instead of racing it through scale-down, copy and switch. A
// Lease, not an annotation on the claim: a killed run's lock must expire by itself, and
// the new claim may not exist yet when the plan is made.
type claimLock struct {
	claim string
	lease *coordinationv1.Lease
}

// LockName is the name of the Lease that locks claim: claim names may be 253 characters.
func LockName(claim string) string {
	sum := sha256.Sum256([]byte(claim))
	return "krsync-migrate-" + hex.EncodeToString(sum[:6])
}

// locker holds the locks of one migration and renews them until released.
type locker struct {
	cs       kubernetes.Interface
	ns       string
	identity string
	timing   LockTiming
	out      io.Writer
	locks    []*claimLock
	stop     chan struct{}
	stopped  chan struct{}
}

// lockClaims takes the locks of claims (waiting for a killed run's to expire) and renews
// them in the background. The returned context ends, with ErrLockLost as its cause, when
// a lock cannot be kept; unlock stops the renewal and deletes the Leases.
func lockClaims(ctx context.Context, cs kubernetes.Interface, ns string, claims []string, timing LockTiming, out io.Writer) (context.Context, func(), error) {
	l := &locker{cs: cs, ns: ns, identity: lockIdentity(), timing: timing, out: out,
		stop: make(chan struct{}), stopped: make(chan struct{})}
	claims = slices.Compact(slices.Sorted(slices.Values(claims)))
	for _, claim := range claims {
		lk, err := l.take(ctx, claim)
		if err != nil {
			l.release()
			return nil, nil, err
		}
		l.locks = append(l.locks, lk)
	}
	lockCtx, cancel := context.WithCancelCause(ctx)
	go l.renew(lockCtx, cancel)
	return lockCtx, func() {
		close(l.stop)
		<-l.stopped
		cancel(nil)
		l.release()
	}, nil
}

// lockIdentity names this run in the Lease, for the message of the run it refuses.
func lockIdentity() string {
	host, _ := os.Hostname()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("krsync-migrate@%s-pid%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// take creates claim's Lease, or takes over one whose holder stopped renewing it: the
// holder is judged alive if the Lease changes within its duration, timed on this
// machine's clock (as client-go's leader election does: the holder's clock may differ).
func (l *locker) take(ctx context.Context, claim string) (*claimLock, error) {
	leases := l.cs.CoordinationV1().Leases(l.ns)
	name := LockName(claim)
	var seen *coordinationv1.Lease
	var seenAt time.Time
	told := false
	for {
		cur, err := leases.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			created, err := leases.Create(ctx, l.leaseFor(claim, name, nil), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("lock claim %s/%s (Lease %s): %w", l.ns, claim, name, err)
			}
			return &claimLock{claim: claim, lease: created}, nil
		case err != nil:
			return nil, fmt.Errorf("lock claim %s/%s: read Lease %s: %w", l.ns, claim, name, err)
		}
		holder := ptr.Deref(cur.Spec.HolderIdentity, "")
		expired := seen != nil && seen.ResourceVersion == cur.ResourceVersion && time.Since(seenAt) > leaseDuration(cur)
		if holder != "" && !expired {
			if seen != nil && seen.ResourceVersion != cur.ResourceVersion {
				return nil, fmt.Errorf("claim %s/%s is %w (%s, Lease %s renewed just now): run one migration of a claim at a time; to stop it, interrupt it (Ctrl-C), then run again or --rollback",
					l.ns, claim, ErrInUse, holder, name)
			}
			if seen == nil {
				seen, seenAt = cur, time.Now()
			}
			if !told {
				fmt.Fprintf(l.out, "claim %s is locked by %s (Lease %s): waiting up to %s to see whether it still runs\n",
					claim, holder, name, leaseDuration(cur))
				told = true
			}
			if err := sleepCtx(ctx, l.timing.Renew/5); err != nil {
				return nil, err
			}
			continue
		}
		updated, err := leases.Update(ctx, l.leaseFor(claim, name, cur), metav1.UpdateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			seen, told = nil, false
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock claim %s/%s (Lease %s): %w", l.ns, claim, name, err)
		}
		if holder != "" {
			fmt.Fprintf(l.out, "claim %s: took over the lock of %s, which stopped renewing it\n", claim, holder)
		}
		return &claimLock{claim: claim, lease: updated}, nil
	}
}

// leaseFor is the Lease of claim held by this run: new, or cur taken over (same
// resourceVersion, so a concurrent taker conflicts).
func (l *locker) leaseFor(claim, name string, cur *coordinationv1.Lease) *coordinationv1.Lease {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if cur != nil {
		lease = cur.DeepCopy()
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	lease.Annotations[AnnoLockClaim] = claim
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	lease.Labels["app.kubernetes.io/managed-by"] = "krsync"
	now := metav1.NewMicroTime(time.Now())
	lease.Spec.HolderIdentity = ptr.To(l.identity)
	lease.Spec.LeaseDurationSeconds = ptr.To(int32((l.timing.Duration + time.Second - 1) / time.Second))
	lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
	return lease
}

// leaseDuration is how long lease lasts without renewal.
func leaseDuration(lease *coordinationv1.Lease) time.Duration {
	return time.Duration(ptr.Deref(lease.Spec.LeaseDurationSeconds, 0)) * time.Second
}

// renew renews every lock each Renew; a lock another run took over, or one not renewed
// for longer than Duration less one renewal, ends ctx with ErrLockLost.
func (l *locker) renew(ctx context.Context, cancel context.CancelCauseFunc) {
	defer close(l.stopped)
	tick := time.NewTicker(l.timing.Renew)
	defer tick.Stop()
	renewed := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := l.renewOnce(ctx)
		switch {
		case err == nil:
			renewed = time.Now()
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			cancel(fmt.Errorf("%w: %v; another run may be working on them now", ErrLockLost, err))
			return
		case time.Since(renewed) > l.timing.Duration-l.timing.Renew:
			cancel(fmt.Errorf("%w: not renewed for %s: %v", ErrLockLost, time.Since(renewed).Round(time.Second), err))
			return
		}
	}
}

// renewOnce moves every lock's renew time to now.
func (l *locker) renewOnce(ctx context.Context) error {
	for _, lk := range l.locks {
		// An update on the resourceVersion this run last wrote: a Lease another run took
		// over since conflicts.
		lease := lk.lease.DeepCopy()
		lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
		updated, err := l.cs.CoordinationV1().Leases(l.ns).Update(ctx, lease, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("renew the lock of claim %s (Lease %s): %w", lk.claim, lease.Name, err)
		}
		lk.lease = updated
	}
	return nil
}

// release deletes the Leases this run still holds, with preconditions, so a lock another
// run took over in the meantime is left alone. It runs after an interruption too, so it
// has its own deadline rather than the migration's context.
func (l *locker) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, lk := range l.locks {
		err := l.cs.CoordinationV1().Leases(l.ns).Delete(ctx, lk.lease.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &lk.lease.UID, ResourceVersion: &lk.lease.ResourceVersion},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			fmt.Fprintf(l.out, "could not release the lock of claim %s (Lease %s, it expires by itself in %s): %v\n",
				lk.claim, lk.lease.Name, l.timing.Duration, err)
		}
	}
	l.locks = nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
