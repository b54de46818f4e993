package migrate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// testTiming keeps the tests short; the rules are the same as with the default.
var testTiming = LockTiming{Duration: 2 * time.Second, Renew: 300 * time.Millisecond}

// lease reads claim's lock, nil when there is none.
func (e *env) lease(claim string) *coordinationv1.Lease {
	e.t.Helper()
	l, err := e.cs.CoordinationV1().Leases(e.ns).Get(context.Background(), LockName(claim), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// waitDone waits until ctx ends, failing the test after a deadline far beyond the timing.
func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
		t.Fatalf("%s: the context did not end", what)
	}
}

// TestLockClaims: one run at a time per claim. A second run sharing either claim is refused
// while the first renews its lock, takes it at once after the first released it, and takes
// over a lock whose holder stopped renewing; a run whose lock another took over stops, and
// its release leaves the other's lock alone.
func TestLockClaims(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var out bytes.Buffer

	first, unlockFirst, err := lockClaims(ctx, e.cs, e.ns, []string{"old", "new", "old"}, testTiming, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, claim := range []string{"old", "new"} {
		l := e.lease(claim)
		if l == nil || !strings.HasPrefix(ptr.Deref(l.Spec.HolderIdentity, ""), "krsync-migrate@") || l.Annotations[AnnoLockClaim] != claim {
			t.Fatalf("claim %s: lock %+v, want a Lease held by this run naming the claim", claim, l)
		}
	}
	// Refused while the first renews: on the same pair, and on a pair sharing one claim.
	for _, claims := range [][]string{{"old", "new"}, {"new", "other"}} {
		_, _, err := lockClaims(ctx, e.cs, e.ns, claims, testTiming, &out)
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "krsync-migrate@") {
			t.Errorf("lock %v while another run holds it: %v, want ErrInUse naming the holder", claims, err)
		}
	}
	if e.lease("other") != nil {
		t.Errorf("a refused run left a lock on claim other")
	}
	if first.Err() != nil {
		t.Fatalf("the first run's context ended while it held its locks: %v", context.Cause(first))
	}

	// Released: the Leases are gone and the next run takes them without waiting.
	unlockFirst()
	if e.lease("old") != nil || e.lease("new") != nil {
		t.Errorf("locks left after unlock")
	}
	out.Reset()
	second, unlockSecond, err := lockClaims(ctx, e.cs, e.ns, []string{"old", "new"}, testTiming, &out)
	if err != nil {
		t.Fatalf("lock after the first released: %v", err)
	}
	if strings.Contains(out.String(), "waiting") {
		t.Errorf("a released lock was waited for:\n%s", out.String())
	}

	// Another run takes the lock over (as if this one had stopped renewing): this one's
	// context ends with ErrLockLost, and its release leaves the other's lock alone.
	stolen := e.lease("new")
	stolen.Spec.HolderIdentity = ptr.To("another-run")
	if _, err := e.cs.CoordinationV1().Leases(e.ns).Update(ctx, stolen, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDone(t, second, "a lock taken over by another run")
	if cause := context.Cause(second); !errors.Is(cause, ErrLockLost) {
		t.Errorf("the context of a run whose lock was taken over ended with %v, want ErrLockLost", cause)
	}
	unlockSecond()
	if l := e.lease("new"); l == nil || ptr.Deref(l.Spec.HolderIdentity, "") != "another-run" {
		t.Errorf("the release of a lost lock removed or changed the other run's Lease: %+v", l)
	}

	// The other run is killed: its lock is no longer renewed, and the next run takes it
	// over once it has seen it unchanged for the lock's duration.
	out.Reset()
	third, unlockThird, err := lockClaims(ctx, e.cs, e.ns, []string{"new"}, testTiming, &out)
	if err != nil {
		t.Fatalf("lock held by a run that no longer renews it: %v", err)
	}
	defer unlockThird()
	if !strings.Contains(out.String(), "took over the lock of another-run") {
		t.Errorf("the takeover is not told:\n%s", out.String())
	}
	if third.Err() != nil {
		t.Errorf("the context of the run that took the lock over ended: %v", context.Cause(third))
	}
}
