package lease

import (
	"context"
	"fmt"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations this package writes on the election's Lease. client-go's
// elector keeps annotations it does not know when it writes the Lease, and
// never reads them.
const (
	// IncarnationAnnotation holds the nonce of the process that holds the
	// current term (Config.Nonce), written when it takes the Lease.
	IncarnationAnnotation = "leader-elector.io/incarnation"
	// SuccessorAnnotation names the candidate a handover reserved the
	// released Lease for.
	SuccessorAnnotation = "leader-elector.io/successor"
	// successorOfAnnotation ties the reservation to the released state it
	// was written with ("<transitions>@<renewTime>"): a client-go elector
	// that takes the Lease keeps the annotations, and its own release must
	// not read as a reservation.
	successorOfAnnotation = "leader-elector.io/successor-of"
	// successorSecondsAnnotation is how long the reservation lasts, measured
	// by each candidate from when it first saw the released state.
	successorSecondsAnnotation = "leader-elector.io/successor-seconds"
)

// termAnnotations returns ann with this term's annotations: the
// incarnation nonce set (or removed when this Lock has none) and any
// reservation removed (it was for this take).
func (l *Lock) termAnnotations(ann map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range ann {
		switch k {
		case IncarnationAnnotation, SuccessorAnnotation, successorOfAnnotation, successorSecondsAnnotation:
		default:
			out[k] = v
		}
	}
	if l.nonce != "" {
		out[IncarnationAnnotation] = l.nonce
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// stateMark names a released state: its transitions and renew time.
func stateMark(lease *coordinationv1.Lease) string {
	if lease.Spec.RenewTime == nil {
		return ""
	}
	return strconv.FormatInt(transitions(lease), 10) + "@" + lease.Spec.RenewTime.UTC().Format(metav1.RFC3339Micro)
}

// reservation reports the successor a released Lease is reserved for and
// until when (this process's monotonic clock), if it is.
func (l *Lock) reservation(o observation) (string, time.Time, bool) {
	lease := o.lease
	if lease == nil || holder(lease) != "" {
		return "", time.Time{}, false
	}
	to := lease.Annotations[SuccessorAnnotation]
	mark := stateMark(lease)
	if to == "" || mark == "" || lease.Annotations[successorOfAnnotation] != mark {
		return "", time.Time{}, false
	}
	d := l.duration
	if s, err := strconv.ParseInt(lease.Annotations[successorSecondsAnnotation], 10, 32); err == nil && s > 0 {
		d = min(time.Duration(s)*time.Second, MaxDuration)
	}
	return to, o.at.Add(d), true
}

// HandOver ends term t in one conditional update that releases the Lease
// as Release does (client-go candidates see an ordinary release) and
// reserves it for the candidate named to for reserve (whole seconds,
// rounded up): leader-elector candidates with another identity do not take
// it until they have seen it released for that long, so to is the only one
// of them that can win the next term, with a token above t's. A successor
// that never comes costs at most reserve. It returns an error wrapping
// ErrLost when the Lease no longer names the term (nothing was handed
// over); other errors leave the outcome unknown.
func (l *Lock) HandOver(ctx context.Context, t *Term, to string, reserve time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.released {
		return fmt.Errorf("term %d was released: %w", t.Token, ErrLost)
	}
	secs := int64((reserve + time.Second - 1) / time.Second)
	_, err := l.releaseTerm(ctx, t, func(next *coordinationv1.Lease) {
		now := metav1.NewMicroTime(time.Now().Truncate(time.Microsecond))
		next.Spec = l.record("", time.Second, now, t.Token)
		next.Spec.RenewTime = &now
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		next.Annotations[SuccessorAnnotation] = to
		next.Annotations[successorOfAnnotation] = stateMark(next)
		next.Annotations[successorSecondsAnnotation] = strconv.FormatInt(secs, 10)
	})
	return err
}

// ReleaseOf releases the Lease if its holder is this Lock's identity and
// the term was taken by the process whose nonce is given (its
// IncarnationAnnotation), with the same update as Release. A term of any
// other process, another identity's, or an absent Lease is left alone:
// released is false then, and that is not an error. The caller must know
// that process is dead: its term is ended under it.
func (l *Lock) ReleaseOf(ctx context.Context, nonce string) (released bool, err error) {
	if nonce == "" {
		return false, fmt.Errorf("lease: release of a term: no nonce given")
	}
	for attempt := 0; attempt < 2; attempt++ {
		cur, err := l.leases.Get(ctx, l.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading Lease %s: %w", l.Describe(), err)
		}
		l.noteLease(cur)
		if holder(cur) != l.identity || cur.Annotations[IncarnationAnnotation] != nonce {
			return false, nil
		}
		next := cur.DeepCopy()
		next.Spec = l.record("", time.Second, metav1.NewMicroTime(time.Now()), transitions(cur))
		delete(next.Annotations, IncarnationAnnotation)
		res, err := l.leases.Update(ctx, next, metav1.UpdateOptions{})
		switch {
		case err == nil:
			l.noteLease(res)
			return true, nil
		case apierrors.IsConflict(err):
			continue // a stale read: judge again
		default:
			return false, fmt.Errorf("releasing Lease %s: %w", l.Describe(), err)
		}
	}
	return false, fmt.Errorf("releasing Lease %s: it kept changing", l.Describe())
}
