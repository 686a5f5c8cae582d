package election

import (
	"sync"
	"time"
)

// Status is what the engine tells publishers.
type Status struct {
	Election string
	Backend  string
	Identity string // this candidate
	TTL      time.Duration
	// Caveats names what the backend does not guarantee; empty for etcd.
	Caveats string

	Leader       string    // the current leader's identity; empty when none is known
	IsLeader     bool      // this candidate leads and its validity deadline has not passed
	FencingToken int64     // the current term's token; 0 when no leader is known
	Since        time.Time // wall-clock time the current term was observed to start

	// Ready means the backend answered and an election outcome was observed.
	// While it is false no leader is named (Leader is empty), because the
	// last one known may have stepped down since.
	Ready bool
	// State is where the engine is in its cycle (see the package doc).
	State State
	// Problem says why the backend is failing: ProblemUnreachable or
	// ProblemDenied; empty while it answers. The logs carry the details.
	Problem string
	// DuplicateIdentity means another running instance uses this
	// instance's identity: the backend has shown a leader with our name
	// that is not us for longer than DuplicateAfter. Both instances stay
	// safe (each holds its own lease or lock), but only one can ever lead.
	DuplicateIdentity bool
	// Changed is when this status was published.
	Changed time.Time
	// Mono is Changed on CLOCK_MONOTONIC in nanoseconds, which processes on
	// one machine share, so histories of several candidates can be compared.
	Mono int64
}

// Source is what publishers consume: the latest status and a channel that is
// closed when it is replaced.
type Source interface {
	Status() (Status, <-chan struct{})
}

// broadcaster holds the latest Status. Readers never block writers, and a
// slow reader simply sees the latest value when it looks again.
type broadcaster struct {
	mu       sync.Mutex
	current  Status
	changed  chan struct{}
	onChange func(Status) // sees every change, in order; may be nil
}

func newBroadcaster(initial Status, onChange func(Status)) *broadcaster {
	return &broadcaster{current: initial, changed: make(chan struct{}), onChange: onChange}
}

// Status returns the latest status and a channel closed on the next change.
func (b *broadcaster) Status() (Status, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current, b.changed
}

// update applies fn to the status and wakes readers if anything changed.
func (b *broadcaster) update(fn func(*Status)) Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := b.current
	fn(&next)
	next.Changed, next.Mono = b.current.Changed, b.current.Mono
	if next == b.current {
		return next
	}
	next.Changed, next.Mono = time.Now(), monotonicNow()
	b.current = next
	if b.onChange != nil {
		b.onChange(next)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return next
}
