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

// Acquire blocks until this candidate takes the Lease, ctx ends, or a
// request fails, and returns the new term.
//
// It takes the Lease when it is absent (create), released (empty holder),
// or when this process has seen the same state of it (same UID and
// resourceVersion) for the record's whole leaseDurationSeconds on its own
// monotonic clock. The record's timestamps, written by other machines'
// clocks, are never compared with ours. Every take is an update carrying the
// resourceVersion that was judged, so of several candidates judging the same
// state only one succeeds; the others see a conflict and read again.
//
// While it waits it watches the Lease, so a release is seen within
// milliseconds; a failure of the watch is returned like any other (the
// caller retries: nothing of the wait is lost, since the observation lives
// in the Lock). A holder with this candidate's own identity (an earlier run
// of this process) is waited out like any other.
func (l *Lock) Acquire(ctx context.Context) (*Term, error) { return l.AcquireWhen(ctx, nil) }

// Hold is a candidate's own reason not to take a free Lease yet (for
// example: a newer generation waits). It reports whether to hold back, until
// when at the latest (zero: until changed fires) and a channel closed when
// its answer may change. A nil Hold never holds back.
type Hold func() (hold bool, until time.Time, changed <-chan struct{})

// AcquireWhen is Acquire for a candidate that may hold back: when the
// Lease is free for it (absent, released, or its holder silent for its
// whole duration) and hold says so, it waits instead of taking it.
//
// A Lease released by a handover (HandOver) is reserved for the successor
// it names: a candidate with another identity does not take it until it has
// seen that released state for the reservation's duration on its own
// clock; the successor takes it at once, whatever hold says.
func (l *Lock) AcquireWhen(ctx context.Context, hold Hold) (*Term, error) {
	wctx, stop := context.WithCancel(ctx)
	watchErr := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() { watchErr <- l.stream(wctx, func() {}) })

	if err := l.refresh(ctx); err != nil {
		return nil, err
	}
	// wait blocks until the Lease or hold's answer changes, or until.
	wait := func(until time.Time, other <-chan struct{}, changed <-chan struct{}) error {
		var fire <-chan time.Time
		if !until.IsZero() {
			timer := time.NewTimer(time.Until(until))
			defer timer.Stop()
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watchErr:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		case <-changed:
		case <-other:
		case <-fire:
		}
		return nil
	}
	for {
		o, changed := l.current()
		var (
			t   *Term
			err error
		)
		// free: the Lease may be taken now, by kind, vacant since.
		free, kind, vacant := false, "", time.Time{}
		var until time.Time
		holdBack := hold
		switch {
		case o.lease == nil:
			// Absent: perhaps deleted while its holder still claims (by
			// hand, to "unstick" an election); the holder learns of it only
			// at its next renewal, or at its deadline when it cannot reach
			// the API server. Its validity runs from a renewal sent before
			// the deletion, so a Lease seen absent for a whole duration
			// (plus 2 %: a clock-rate difference of 1 % either way,
			// election.DefaultDrift) has no holder left. A fresh election
			// waits that once too: the two look the same.
			if until := o.at.Add(absentWait(max(l.duration, l.longestSeen()))); time.Now().Before(until) {
				if err := wait(until, nil, changed); err != nil {
					return nil, err
				}
				continue
			}
			free = true
		case holder(o.lease) == "":
			free, kind, vacant = true, Handover, o.at
			if to, reserved, ok := l.reservation(o); ok && time.Now().Before(reserved) {
				if to != l.identity {
					if err := wait(reserved, nil, changed); err != nil {
						return nil, err
					}
					continue
				}
				holdBack = nil // the chosen successor: nothing holds it back
			}
		default:
			expires := o.at.Add(recordDuration(o.lease, l.duration))
			if time.Now().Before(expires) {
				until = expires
			} else {
				free, kind, vacant = true, Failover, expires
			}
		}
		if !free {
			if err := wait(until, nil, changed); err != nil {
				return nil, err
			}
			continue
		}
		if holdBack != nil {
			if h, hu, hc := holdBack(); h {
				if err := wait(hu, hc, changed); err != nil {
					return nil, err
				}
				continue
			}
		}
		if o.lease == nil {
			t, err = l.create(ctx)
		} else {
			t, err = l.take(ctx, o.lease, vacant, kind)
		}
		switch {
		case err == nil:
			return t, nil
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err):
			// Someone else wrote first: read the state that won and judge again.
			if err := l.refresh(ctx); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

// absentWait is how long a Lease must be seen absent before it is created:
// the lease duration (the longest seen, if longer than ours) and 2 % (see
// AcquireWhen).
func absentWait(d time.Duration) time.Duration { return d + d/50 }

// longestSeen is the longest leaseDurationSeconds seen on the Lease.
func (l *Lock) longestSeen() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxDuration
}

// Check reads the Lease once. A follower calls it to prove the API server
// answers; what it reads also feeds the shared observation.
func (l *Lock) Check(ctx context.Context) error { return l.refresh(ctx) }

// refresh reads the Lease and records what it saw.
func (l *Lock) refresh(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, l.duration)
	defer cancel()
	cur, err := l.leases.Get(rctx, l.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		l.note(nil, "")
		return nil
	case err != nil:
		return fmt.Errorf("reading Lease %s: %w", l.Describe(), err)
	}
	l.noteLease(cur)
	return nil
}

// create creates the Lease held by this candidate. The token continues
// above every token this process has seen, so a Lease deleted while this
// process watched it does not restart the tokens at a lower value.
func (l *Lock) create(ctx context.Context) (*Term, error) {
	token := max(l.highestToken()+1, 1)
	obj := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: l.namespace, Annotations: l.termAnnotations(nil)},
		Spec:       l.record(l.identity, l.duration, metav1.NewMicroTime(time.Now()), token),
	}
	rctx, cancel := context.WithTimeout(ctx, l.duration)
	defer cancel()
	sent := time.Now()
	res, err := l.leases.Create(rctx, obj, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Lease %s: %w", l.Describe(), err)
	}
	l.noteLease(res)
	return &Term{Token: token, sent: sent, lease: res}, nil
}

// take updates the judged state of the Lease to a new term of this
// candidate, carrying its resourceVersion. The token is one above both the
// record's transitions (what client-go's elector does) and every token this
// process has seen.
func (l *Lock) take(ctx context.Context, judged *coordinationv1.Lease, vacant time.Time, kind string) (*Term, error) {
	token := max(transitions(judged), l.highestToken()) + 1
	next := judged.DeepCopy()
	next.Annotations = l.termAnnotations(next.Annotations)
	next.Spec = l.record(l.identity, l.duration, metav1.NewMicroTime(time.Now()), token)
	rctx, cancel := context.WithTimeout(ctx, l.duration)
	defer cancel()
	sent := time.Now()
	res, err := l.leases.Update(rctx, next, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("taking Lease %s: %w", l.Describe(), err)
	}
	l.noteLease(res)
	return &Term{Token: token, Vacant: vacant, Kind: kind, sent: sent, lease: res}, nil
}
