package election

import (
	"sync"
	"sync/atomic"
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
	// Switchover means the backend can hand leadership to a chosen
	// candidate (Engine.HandOver, POST /resign?to=); see Handoff.
	Switchover bool
	// Generation is the workload version this candidate publishes
	// (Config.Generation); 0 when generations are off.
	Generation int64

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
	// Problem says why the backend is failing: ProblemUnreachable,
	// ProblemDenied or ProblemMisconfigured; empty while it answers. The logs carry the details.
	Problem string
	// DuplicateIdentity means another running instance uses this
	// instance's identity: the backend has shown a leader with our name
	// that is not us for longer than DuplicateAfter. Both instances stay
	// safe (each holds its own lease or lock), but only one can ever lead.
	DuplicateIdentity bool
	// Health is the Gate's word for the guarded application ("healthy",
	// "unhealthy", "unknown"); empty without a Gate.
	Health string
	// NotStanding says why this candidate does not stand (State is
	// StateStandingAside); empty while it stands.
	NotStanding string
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

// broadcaster holds the latest Status. Readers never wait: they load the
// latest snapshot atomically, so a writer that is slow (an OnStatus hook
// stuck on its output) cannot hold up /status, /leader or any publisher. A
// slow reader simply sees the latest value when it looks again.
type broadcaster struct {
	mu       sync.Mutex // serialises writers, so onChange sees changes in order
	snap     atomic.Pointer[snapshot]
	onChange func(Status) // sees every change, in order; may be nil
}

// snapshot is one published status and the channel closed when it is
// replaced (or when readers are woken to look again).
type snapshot struct {
	st      Status
	changed chan struct{}
}

func newBroadcaster(initial Status, onChange func(Status)) *broadcaster {
	b := &broadcaster{onChange: onChange}
	b.snap.Store(&snapshot{st: initial, changed: make(chan struct{})})
	return b
}

// Status returns the latest status and a channel closed on the next change.
func (b *broadcaster) Status() (Status, <-chan struct{}) {
	s := b.snap.Load()
	return s.st, s.changed
}

// touch takes and releases the writers' lock: a caller that returns from it
// knows the status path is not stuck.
func (b *broadcaster) touch() {
	b.mu.Lock()
	defer b.mu.Unlock()
}

// wake closes the current change channel without changing the status, so
// readers look again (the engine does this at its validity deadline: the
// status then reads not-leader although no writer has run). It never waits
// for a writer.
func (b *broadcaster) wake() { b.store(nil) }

// store replaces the snapshot (keeping the status when st is nil) and
// closes the old channel.
func (b *broadcaster) store(st *Status) {
	for {
		old := b.snap.Load()
		next := &snapshot{st: old.st, changed: make(chan struct{})}
		if st != nil {
			next.st = *st
		}
		if b.snap.CompareAndSwap(old, next) {
			close(old.changed)
			return
		}
	}
}

// update applies fn to the status and wakes readers if anything changed.
func (b *broadcaster) update(fn func(*Status)) Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.snap.Load().st
	next := cur
	fn(&next)
	next.Changed, next.Mono = cur.Changed, cur.Mono
	if next == cur {
		return next
	}
	next.Changed, next.Mono = time.Now(), monotonicNow()
	if b.onChange != nil {
		b.onChange(next)
	}
	b.store(&next)
	return next
}
