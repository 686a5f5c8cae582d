package election

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors shared by every backend.
var (
	// ErrLost means the backend says this candidacy no longer exists (its
	// lease or lock is gone). The engine steps down at once and starts over.
	ErrLost = errors.New("election: candidacy lost")
	// ErrNotLeader is returned by Engine.Resign when there is nothing to resign.
	ErrNotLeader = errors.New("election: not leader")
)

// Validity is a proof of liveness: the backend acknowledged a request that was
// sent at Sent (monotonic clock), and the lease or lock it refreshed cannot
// expire before Sent+TTL. A zero Validity proves nothing.
type Validity struct {
	Sent time.Time
	TTL  time.Duration
}

// IsZero reports whether v proves nothing.
func (v Validity) IsZero() bool { return v.Sent.IsZero() }

// Term describes a won election: the fencing token of the term and a proof
// that the candidacy was alive after it won.
type Term struct {
	Token    int64
	Validity Validity
	// Vacant is when the candidacy saw its predecessor go (monotonic clock);
	// zero when it won without waiting. The engine reports the time from
	// Vacant to leading as the takeover time.
	Vacant time.Time
	// Kind says how the predecessor went: Handover (it resigned) or
	// Failover (its lease or lock expired); empty when unknown.
	Kind string
}

// How a predecessor went, for Term.Kind and the takeover metric.
const (
	Handover = "handover"
	Failover = "failover"
)

// Leader is the current leader as the backend sees it. An empty ID means no
// leader is known. Token is the fencing token of the leader's term.
type Leader struct {
	ID    string
	Token int64
}

// Backend is one storage system's implementation of an election. It is
// chosen at start-up and never switched.
type Backend interface {
	// Name is the backend's name as it appears in status and metrics.
	Name() string
	// Candidate starts a fresh candidacy (for etcd: grants a lease) and
	// returns the proof of liveness the grant gave, which may be zero when the
	// backend holds nothing until it wins (Redis).
	Candidate(ctx context.Context) (Candidacy, Validity, error)
	// Observe calls fn with the current leader every time it changes (and once
	// at start), until ctx ends or an error stops it. It returns that error,
	// or ctx.Err().
	Observe(ctx context.Context, fn func(Leader)) error
	// Close releases the backend's connections.
	Close() error
}

// Caveats is implemented by backends that cannot give every guarantee of
// the etcd backend; the text is shown to users in the status.
type Caveats interface {
	Caveats() string
}

// Candidacy is one attempt to lead, from grant to resignation or loss.
type Candidacy interface {
	// Campaign blocks until this candidacy leads, or ctx ends. Before it
	// returns a Term it has re-checked that the candidacy still exists.
	Campaign(ctx context.Context) (Term, error)
	// Renew refreshes the candidacy's lease or lock once. A zero Validity with
	// a nil error means there was nothing to refresh. ErrLost (wrapped) means
	// the candidacy is gone; any other error may be transient.
	Renew(ctx context.Context) (Validity, error)
	// Resign gives up leadership (if held) and releases the candidacy's lease
	// or lock, so a waiting candidate can take over at once.
	Resign(ctx context.Context) error
}
