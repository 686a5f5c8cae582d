package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// BackendName is the backend's name in the registry, status and metrics.
const BackendName = "kubernetes"

// Options locate the Lease of the backend.
type Options struct {
	// Client reaches the coordination.k8s.io/v1 API (a clientset's
	// CoordinationV1()); required. See Config.Client about rate limits.
	Client coordinationv1client.LeasesGetter
	// Namespace is the Lease's namespace; required.
	Namespace string
	// Name is the Lease's name. Default: the election name.
	Name string
}

// Validate checks the Lease's namespace and name without contacting
// anything (NewBackend also requires a Client). Errors are
// *election.ConfigError values naming the field.
func (o Options) Validate() error {
	if o.Namespace == "" {
		return election.Invalid("Namespace", "is required")
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return election.Invalid("Namespace", "%q is not a valid namespace: %s", o.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(o.Name); len(errs) > 0 {
		return election.Invalid("Name", "%q is not a valid Lease name: %s", o.Name, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateTTL checks a TTL against the backend's limits: whole seconds
// (spec.leaseDurationSeconds is an integer), from MinDuration to
// MaxDuration.
func ValidateTTL(ttl time.Duration) error {
	switch {
	case ttl < MinDuration || ttl > MaxDuration:
		return election.Invalid("TTL", "%v: the kubernetes backend needs between %v and %v", ttl, MinDuration, MaxDuration)
	case ttl%time.Second != 0:
		return election.Invalid("TTL", "%v: a Lease's duration is whole seconds", ttl)
	}
	return nil
}

// Backend adapts a Lock to election.Backend. It holds nothing between
// candidacies: like Redis, a candidacy holds the Lease only once it won.
type Backend struct {
	lock *Lock
}

// NewBackend returns a backend for the Lease o names and the candidate p.
// It contacts nothing.
func NewBackend(o Options, p election.Params, log *slog.Logger) (*Backend, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := ValidateTTL(p.TTL); err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = p.Election
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Client == nil {
		return nil, election.Invalid("Client", "is required")
	}
	l, err := New(Config{
		Client: o.Client, Namespace: o.Namespace, Name: o.Name,
		Identity: p.Identity, Duration: p.TTL, Logger: log,
	})
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
// unreachable API server fails here.
func (b *Backend) Candidate(ctx context.Context) (election.Candidacy, election.Validity, error) {
	if err := b.lock.Check(ctx); err != nil {
		return nil, election.Validity{}, classify(err)
	}
	return &candidacy{b: b}, election.Validity{}, nil
}

// Observe implements election.Backend.
func (b *Backend) Observe(ctx context.Context, fn func(election.Leader)) error {
	err := b.lock.Watch(ctx, func(h Holder) { fn(election.Leader{ID: h.Identity, Token: h.Token}) })
	if ctx.Err() != nil {
		return err
	}
	return classify(err)
}

// classify marks the errors of the contract: a lost term is
// election.ErrLost, a refused credential or permission election.ErrDenied.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrLost):
		return fmt.Errorf("%w: %w", election.ErrLost, err)
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: %w", election.ErrDenied, err)
	}
	return err
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
		return election.Term{}, classify(err)
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
		return election.Validity{}, classify(c.b.lock.Check(ctx))
	}
	sent, err := c.b.lock.Renew(ctx, t)
	if err != nil {
		return election.Validity{}, classify(err)
	}
	return election.Validity{Sent: sent, TTL: c.b.lock.duration}, nil
}

// Resign implements election.Candidacy: it releases a won Lease.
func (c *candidacy) Resign(ctx context.Context) error {
	t := c.current()
	if t == nil {
		return nil
	}
	return classify(c.b.lock.Release(ctx, t))
}
