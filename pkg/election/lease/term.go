package lease

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// How a predecessor went, for Term.Kind.
const (
	// Handover: the predecessor released the Lease (holder cleared).
	Handover = "handover"
	// Failover: the predecessor was silent for its whole lease duration.
	Failover = "failover"
)

// Term is one won term. Its methods are Lock.Renew and Lock.Release.
type Term struct {
	// Token is the term's fencing token: spec.leaseTransitions as this
	// candidate wrote it when it took the Lease.
	Token int64
	// Vacant is when (monotonic clock) this candidate saw the Lease become
	// free: the release was observed, or the holder's silence reached its
	// lease duration. Zero when the Lease was free or absent on first sight.
	Vacant time.Time
	// Kind is Handover, Failover, or "" when there was no predecessor.
	Kind string

	mu       sync.Mutex
	sent     time.Time             // send time of the last acknowledged write
	lease    *coordinationv1.Lease // the object as the last acknowledged write returned it
	released bool
}

// Sent is the send time (monotonic clock) of the last write of this term
// the API server acknowledged. Nobody else can take the Lease before
// Sent + the lease duration on a correct clock.
func (t *Term) Sent() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent
}

// record returns the spec this candidate writes: holder, duration, times
// and transitions, as client-go's LeaseLock writes them. Fields it does not
// know (preferredHolder, strategy) are cleared, as client-go does.
func (l *Lock) record(holder string, duration time.Duration, acquired metav1.MicroTime, token int64) coordinationv1.LeaseSpec {
	secs := int32(duration / time.Second)
	tr := int32(token)
	renewed := metav1.NewMicroTime(time.Now())
	return coordinationv1.LeaseSpec{
		HolderIdentity:       &holder,
		LeaseDurationSeconds: &secs,
		AcquireTime:          &acquired,
		RenewTime:            &renewed,
		LeaseTransitions:     &tr,
	}
}

// owns reports whether lease is still the object of term t: same object,
// this identity, this token and acquire time. Only this term's writes can
// leave the Lease in that state (every take increments the token under
// optimistic concurrency), so a write of ours whose answer was lost is
// recognised as ours.
func (l *Lock) owns(t *Term, lease *coordinationv1.Lease) bool {
	mine := t.lease
	return lease != nil && lease.UID == mine.UID && holder(lease) == l.identity &&
		transitions(lease) == t.Token && lease.Spec.AcquireTime != nil && mine.Spec.AcquireTime != nil &&
		lease.Spec.AcquireTime.Equal(mine.Spec.AcquireTime)
}

// Renew writes a fresh renewTime with the resourceVersion of this term's
// last write, and returns the send time: the leader may claim leadership
// until that instant plus the lease duration, less its safety margins.
//
// It returns an error wrapping ErrLost when the Lease no longer names this
// term (taken over, released, deleted or replaced). A conflict caused by a
// write of ours whose answer was lost is recognised and retried once.
// Other errors may be transient: the term is not lost until its deadline.
func (l *Lock) Renew(ctx context.Context, t *Term) (time.Time, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.released {
		return time.Time{}, fmt.Errorf("term %d was released: %w", t.Token, ErrLost)
	}
	for attempt := 0; ; attempt++ {
		next := t.lease.DeepCopy()
		next.Spec = l.record(l.identity, l.duration, *t.lease.Spec.AcquireTime, t.Token)
		sent := time.Now()
		res, err := l.leases.Update(ctx, next, metav1.UpdateOptions{})
		if err == nil {
			l.noteLease(res)
			t.lease, t.sent = res, sent
			return sent, nil
		}
		if lost, lerr := l.resync(ctx, t, err, attempt); lost || lerr != nil {
			return time.Time{}, lerr
		}
	}
}

// Release clears the holder, as client-go's elector does on release: empty
// holderIdentity, leaseDurationSeconds 1, acquire and renew times now,
// transitions unchanged. Waiting candidates, ours or client-go's, take the
// Lease at once. Releasing a term that is already lost is not an error.
func (l *Lock) Release(ctx context.Context, t *Term) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.released {
		return nil
	}
	lost, err := l.releaseTerm(ctx, t, func(next *coordinationv1.Lease) {
		next.Spec = l.record("", time.Second, metav1.NewMicroTime(time.Now()), t.Token)
	})
	if lost {
		return nil
	}
	return err
}

// releaseTerm writes t's Lease as set makes it (a released record), with
// optimistic concurrency, retrying after a conflict that leaves t's term in
// place; t must be locked. When the update is written, or when t's term was
// found lost meanwhile (lost true, with resync's error), t is released.
func (l *Lock) releaseTerm(ctx context.Context, t *Term, set func(next *coordinationv1.Lease)) (lost bool, err error) {
	for attempt := 0; ; attempt++ {
		next := t.lease.DeepCopy()
		set(next)
		res, err := l.leases.Update(ctx, next, metav1.UpdateOptions{})
		if err == nil {
			l.noteLease(res)
			t.released = true
			return false, nil
		}
		lost, lerr := l.resync(ctx, t, err, attempt)
		if lost {
			t.released = true
			return true, lerr
		}
		if lerr != nil {
			return false, lerr
		}
	}
}

// resync handles a failed write of term t. It returns lost when the Lease
// no longer names the term (err then wraps ErrLost), a plain error when the
// write may be retried later, and neither when the term's own lost write
// explained a conflict and t was updated to retry now.
func (l *Lock) resync(ctx context.Context, t *Term, err error, attempt int) (bool, error) {
	switch {
	case apierrors.IsNotFound(err):
		l.note(nil, "")
		return true, fmt.Errorf("the Lease was deleted: %w", ErrLost)
	case !apierrors.IsConflict(err):
		return false, fmt.Errorf("writing the Lease: %w", err)
	case attempt > 0:
		return false, fmt.Errorf("writing the Lease: conflict again after re-reading it: %w", err)
	}
	cur, gerr := l.leases.Get(ctx, l.name, metav1.GetOptions{})
	if apierrors.IsNotFound(gerr) {
		l.note(nil, "")
		return true, fmt.Errorf("the Lease was deleted: %w", ErrLost)
	}
	if gerr != nil {
		return false, fmt.Errorf("re-reading the Lease after a conflict: %w", gerr)
	}
	l.noteLease(cur)
	if !l.owns(t, cur) {
		return true, fmt.Errorf("the Lease now names %q with token %d: %w", holder(cur), transitions(cur), ErrLost)
	}
	t.lease = cur
	return false, nil
}
