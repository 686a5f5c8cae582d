package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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
	if _, ok := lineName(o.Name); !ok {
		return election.Invalid("Name", "%q is too long: the candidates' Lease is named after it with %q, and a name has at most 253 characters",
			o.Name, LineSuffix)
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

// Backend adapts a Lock to election.Backend. A candidacy holds the
// election's Lease only once it won; while it waits it keeps an entry on
// the line object (line.go), which is what makes it visible to a
// switchover (election.Handoff) and to older generations
// (election.Generations).
type Backend struct {
	lock     *Lock
	line     *line
	identity string
	nonce    string // this process's: names its terms and its line entry
	log      *slog.Logger

	// The line is followed while any candidacy of this backend is active.
	followMu   sync.Mutex
	active     int
	closed     bool
	stopFollow context.CancelFunc
	followWG   sync.WaitGroup
	// denied is set while the line object is refused (RBAC without it):
	// candidacies then campaign without an entry, as before it existed.
	// Each new candidacy tries again; the warning is logged once per change.
	denied atomic.Bool
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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	l, err := New(Config{
		Client: o.Client, Namespace: o.Namespace, Name: o.Name,
		Identity: p.Identity, Duration: p.TTL, Logger: log, Nonce: nonce,
	})
	if err != nil {
		return nil, err
	}
	return &Backend{
		lock: l, line: newLine(o.Client.Leases(o.Namespace), o.Name, p.TTL, log.With("identity", p.Identity)),
		identity: p.Identity, nonce: nonce, log: log.With("identity", p.Identity),
	}, nil
}

// newNonce returns 16 random lowercase hex digits.
func newNonce() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lease: reading a random nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Lock returns the backend's Lock.
func (b *Backend) Lock() *Lock { return b.lock }

// Name implements election.Backend.
func (b *Backend) Name() string { return BackendName }

// Close implements election.Backend: it stops following the line (which
// is otherwise followed while a candidacy is active, from Candidate to
// Resign). The clientset needs no closing.
func (b *Backend) Close() error {
	b.followMu.Lock()
	defer b.followMu.Unlock()
	b.closed = true
	if b.stopFollow != nil {
		b.stopFollow()
	}
	b.followWG.Wait()
	return nil
}

// startFollowing counts an active candidacy, and starts following the
// line object if it is the first.
func (b *Backend) startFollowing() {
	b.followMu.Lock()
	defer b.followMu.Unlock()
	b.active++
	if b.active > 1 || b.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stopFollow = cancel
	b.followWG.Go(func() { b.line.follow(ctx) })
}

// stopFollowing counts a candidacy that ended, and stops following the
// line when none is left. The view is kept: a later candidacy starts from
// what this process saw.
func (b *Backend) stopFollowing() {
	b.followMu.Lock()
	defer b.followMu.Unlock()
	b.active--
	if b.active > 0 || b.stopFollow == nil {
		return
	}
	b.stopFollow()
	b.followWG.Wait()
}

// Caveats implements election.Caveats.
func (b *Backend) Caveats() string {
	return "the API server never expires a Lease: expiry is judged by each candidate's own clock, so a clock that runs " +
		"more than 1% fast can shorten a wait; fencing tokens go backwards if the Lease is deleted and created again " +
		"by a client that never saw the old token (a client-go elector, or a sidecar started after the deletion); " +
		"a switchover reserves the released Lease for the chosen successor, and older generations wait for newer ones, " +
		"among leader-elector candidates only: a client-go elector on the same Lease takes a released Lease at once"
}

// Candidate implements election.Backend: it reads the Lease once, so an
// unreachable API server fails here, and joins the line. When the line
// object is forbidden (RBAC that predates it) it warns (once until that
// changes) and the candidacy campaigns without an entry: it cannot be
// chosen by a switchover and does not take part in generations.
func (b *Backend) Candidate(ctx context.Context) (election.Candidacy, election.Validity, error) {
	if err := b.lock.Check(ctx); err != nil {
		return nil, election.Validity{}, classify(err)
	}
	c := &candidacy{b: b}
	e := entry{ID: b.identity, TTL: int32(b.lock.duration / time.Second)}
	v, err := b.line.join(ctx, b.nonce, e)
	switch {
	case err == nil:
		c.joined, c.value, c.entry, c.following = true, v, e, true
		if got, ok := decodeEntry(v); ok {
			c.entry = got
		}
		if b.denied.Swap(false) {
			b.log.Info("the candidates' Lease is allowed again: in line", "lease", b.line.name)
		}
		b.startFollowing()
	case apierrors.IsForbidden(err):
		if !b.denied.Swap(true) {
			b.log.Warn("the candidates' Lease is forbidden: campaigning without a place in line, so switchover and "+
				"generations are off for this candidate; grant get, list, watch and patch on it (and create on leases)",
				"lease", b.line.name, "err", err)
		}
	default:
		return nil, election.Validity{}, classify(err)
	}
	return c, election.Validity{}, nil
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

// candidacy is one attempt: an entry in line until Campaign wins, then one
// term.
type candidacy struct {
	b    *Backend
	mu   sync.Mutex
	term *Term
	// The line entry, while joined: its last written value.
	joined bool
	entry  entry
	value  string
	// gen is the generation WaitNewer published; 0 until then.
	gen atomic.Int64
	// following: this candidacy counts in Backend.active until it resigns.
	following bool
}

func (c *candidacy) current() *Term {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.term
}

// Campaign implements election.Candidacy.
func (c *candidacy) Campaign(ctx context.Context) (election.Term, error) {
	t, err := c.b.lock.AcquireWhen(ctx, c.hold)
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

// Renew implements election.Candidacy. Before winning it renews the
// candidacy's line entry (ErrLost when the entry was removed), or, without
// one, reads the Lease, so a follower learns of an outage as a leader does.
// After winning it renews the term, and leaves the line the first time.
func (c *candidacy) Renew(ctx context.Context) (election.Validity, error) {
	t := c.current()
	if t == nil {
		if c.inLine() {
			err := c.update(ctx, func(e *entry) { e.N++ })
			if err == nil {
				c.b.line.cleanup(ctx, c.b.nonce)
			}
			return election.Validity{}, classify(err)
		}
		return election.Validity{}, classify(c.b.lock.Check(ctx))
	}
	sent, err := c.b.lock.Renew(ctx, t)
	if err != nil {
		return election.Validity{}, classify(err)
	}
	c.leave(ctx)
	return election.Validity{Sent: sent, TTL: c.b.lock.duration}, nil
}

// Resign implements election.Candidacy: it releases a won Lease (unless a
// handover did) and leaves the line.
func (c *candidacy) Resign(ctx context.Context) error {
	defer c.finish(ctx)
	t := c.current()
	if t == nil {
		return nil
	}
	return classify(c.b.lock.Release(ctx, t))
}

// finish ends the candidacy's part in the line: it leaves it and stops
// counting as active. The engine does not resign a candidacy that handed
// over at shutdown, so HandOver calls it too.
func (c *candidacy) finish(ctx context.Context) {
	c.leave(ctx)
	c.mu.Lock()
	following := c.following
	c.following = false
	c.mu.Unlock()
	if following {
		c.b.stopFollowing()
	}
}

func (c *candidacy) inLine() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.joined
}

// update rewrites the candidacy's entry with change applied, if the entry
// is still what it last wrote; an entry removed meanwhile is ErrLost.
func (c *candidacy) update(ctx context.Context, change func(*entry)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.joined {
		return fmt.Errorf("not in line: %w", ErrLost)
	}
	e := c.entry
	change(&e)
	v := e.encode()
	if err := c.b.line.replace(ctx, c.b.nonce, c.value, v); err != nil {
		if errors.Is(err, errEntryGone) {
			c.joined = false
			return fmt.Errorf("the candidacy's place in line: %w: %w", err, ErrLost)
		}
		return err
	}
	c.entry, c.value = e, v
	return nil
}

// leave removes the candidacy's entry, best effort: an entry left behind
// looks dead after its duration and is removed by the other candidates.
func (c *candidacy) leave(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.joined {
		return
	}
	c.joined = false
	if err := c.b.line.remove(ctx, c.b.nonce, c.value); err != nil && !errors.Is(err, errEntryGone) {
		c.b.log.Debug("leaving the line failed; the entry expires on its own", "err", err)
	}
}
