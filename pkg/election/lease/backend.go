package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// BackendName is the backend's name in flags, status and metrics.
const BackendName = "kubernetes"

// Backend adapts a Lock to election.Backend. It holds nothing between
// candidacies: like Redis, a candidacy holds the Lease only once it won.
type Backend struct {
	lock *Lock
}

// NewBackend returns a backend for the Lease cfg names. It contacts nothing.
func NewBackend(cfg Config) (*Backend, error) {
	l, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Backend{lock: l}, nil
}

// Lock returns the backend's Lock.
func (b *Backend) Lock() *Lock { return b.lock }

// Name implements election.Backend.
func (b *Backend) Name() string { return BackendName }

// Close implements election.Backend. The clientset needs no closing.
func (b *Backend) Close() error { return nil }

// Caveats implements election.Caveats.
func (b *Backend) Caveats() string {
	return "the API server never expires a Lease: expiry is judged by each candidate's own clock, so a clock that runs " +
		"more than 1% fast can shorten a wait; fencing tokens go backwards if the Lease is deleted and created again " +
		"by a client that never saw the old token (a client-go elector, or a sidecar started after the deletion)"
}

// Candidate implements election.Backend: it reads the Lease once, so an
// unreachable API server fails here and the engine backs off.
func (b *Backend) Candidate(ctx context.Context) (election.Candidacy, election.Validity, error) {
	if err := b.lock.Check(ctx); err != nil {
		return nil, election.Validity{}, err
	}
	return &candidacy{b: b}, election.Validity{}, nil
}

// Observe implements election.Backend.
func (b *Backend) Observe(ctx context.Context, fn func(election.Leader)) error {
	return b.lock.Watch(ctx, func(h Holder) { fn(election.Leader{ID: h.Identity, Token: h.Token}) })
}

// candidacy is one attempt: nothing until Campaign wins, then one term.
type candidacy struct {
	b    *Backend
	mu   sync.Mutex
	term *Term
}

func (c *candidacy) current() *Term {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.term
}

// Campaign implements election.Candidacy.
func (c *candidacy) Campaign(ctx context.Context) (election.Term, error) {
	t, err := c.b.lock.Acquire(ctx)
	if err != nil {
		return election.Term{}, err
	}
	c.mu.Lock()
	c.term = t
	c.mu.Unlock()
	return election.Term{
		Token:    t.Token,
		Validity: election.Validity{Sent: t.Sent(), TTL: c.b.lock.duration},
		Vacant:   t.Vacant,
		Kind:     t.Kind,
	}, nil
}

// Renew implements election.Candidacy. Before winning it only reads the
// Lease, so a follower learns of an outage as a leader does.
func (c *candidacy) Renew(ctx context.Context) (election.Validity, error) {
	t := c.current()
	if t == nil {
		return election.Validity{}, c.b.lock.Check(ctx)
	}
	sent, err := c.b.lock.Renew(ctx, t)
	if errors.Is(err, ErrLost) {
		return election.Validity{}, fmt.Errorf("%w: %w", election.ErrLost, err)
	}
	if err != nil {
		return election.Validity{}, err
	}
	return election.Validity{Sent: sent, TTL: c.b.lock.duration}, nil
}

// Resign implements election.Candidacy: it releases a won Lease.
func (c *candidacy) Resign(ctx context.Context) error {
	t := c.current()
	if t == nil {
		return nil
	}
	return c.b.lock.Release(ctx, t)
}
