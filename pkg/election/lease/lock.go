package lease

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// Limits on the lease duration.
const (
	// MinDuration is the shortest lease duration accepted. Every renewal is
	// a write through the API server to its etcd (with fsync); below 2 s a
	// renewal every third of the duration leaves too little room for one
	// slow write.
	MinDuration = 2 * time.Second
	// MaxDuration is the longest: Lease.spec.leaseDurationSeconds is an
	// int32, and a day is already far past any sensible failover time.
	MaxDuration = 24 * time.Hour
)

// Sentinel errors.
var (
	// ErrLost means the Lease no longer names this term: someone else took
	// it, or it was deleted or replaced.
	ErrLost = errors.New("lease: lost")
)

// Config configures a Lock. Every field is required.
type Config struct {
	// Client reaches the coordination.k8s.io/v1 API; a clientset's
	// CoordinationV1() is one. Its rate limiter should allow a few requests
	// per second per candidate: a throttled renewal counts from when it was
	// queued, not sent, which only shortens the validity.
	Client coordinationv1client.LeasesGetter
	// Namespace and Name locate the Lease object.
	Namespace, Name string
	// Identity is written to spec.holderIdentity while this candidate leads.
	Identity string
	// Duration is written to spec.leaseDurationSeconds: whole seconds,
	// between MinDuration and MaxDuration.
	Duration time.Duration
	// Logger receives warnings (a deleted or replaced Lease). Default: discard.
	Logger *slog.Logger
	// Nonce, if set, names this process: it is written to the
	// IncarnationAnnotation of every term this Lock takes, so that a later
	// process can release a term of this one and of no other (ReleaseOf).
	// Optional: lowercase letters and digits, at most 63.
	Nonce string
}

// Validate checks cfg without contacting anything. Errors name the field.
func (c Config) Validate() error {
	switch {
	case c.Client == nil:
		return errors.New("lease: a client is required")
	case c.Identity == "":
		return errors.New("lease: identity is required")
	case c.Duration < MinDuration || c.Duration > MaxDuration:
		return fmt.Errorf("lease: duration %v must be between %v and %v", c.Duration, MinDuration, MaxDuration)
	case c.Duration%time.Second != 0:
		return fmt.Errorf("lease: duration %v must be whole seconds (spec.leaseDurationSeconds is an integer)", c.Duration)
	}
	if errs := validation.IsDNS1123Subdomain(c.Name); len(errs) > 0 {
		return fmt.Errorf("lease: name %q is not a valid object name: %s", c.Name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return fmt.Errorf("lease: namespace %q is not a valid namespace: %s", c.Namespace, strings.Join(errs, "; "))
	}
	if c.Nonce != "" && len(validation.IsDNS1123Label(c.Nonce)) > 0 {
		return fmt.Errorf("lease: nonce %q must be lowercase letters and digits, at most 63", c.Nonce)
	}
	return nil
}

// Lock is one candidate's view of one Lease. It is safe for concurrent
// use: Acquire, Watch and Check may run at the same time and share what each
// of them observes.
type Lock struct {
	leases    coordinationv1client.LeaseInterface
	namespace string
	name      string
	identity  string
	nonce     string
	duration  time.Duration
	log       *slog.Logger

	mu      sync.Mutex
	seen    observation
	changed chan struct{} // closed and replaced whenever seen changes
	// maxToken is the highest spec.leaseTransitions seen on any object of
	// this name during this process's life: a candidate that has to create
	// the Lease again continues above it.
	maxToken int64
	// maxDuration is the longest leaseDurationSeconds seen on the Lease: an
	// absent Lease is waited out for at least that long (AcquireWhen).
	maxDuration time.Duration
}

// observation is the latest state of the Lease this process saw, and when
// (monotonic clock) it first saw that state. A follower measures a holder's
// silence from at, on its own clock, never from the record's timestamps.
type observation struct {
	known bool // false until the first read
	lease *coordinationv1.Lease
	// rv orders observations: the object's resourceVersion, or for an absent
	// Lease the resourceVersion of its deletion or of the empty list; "" when
	// unknown (a Get that answered NotFound).
	rv string
	at time.Time
}

// New returns a Lock. It contacts nothing.
func New(cfg Config) (*Lock, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Lock{
		leases:    cfg.Client.Leases(cfg.Namespace),
		namespace: cfg.Namespace,
		name:      cfg.Name,
		identity:  cfg.Identity,
		nonce:     cfg.Nonce,
		duration:  cfg.Duration,
		log:       log.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity),
		changed:   make(chan struct{}),
	}, nil
}

// Describe names the Lease as namespace/name.
func (l *Lock) Describe() string { return l.namespace + "/" + l.name }

// current returns the latest observation and a channel closed when it changes.
func (l *Lock) current() (observation, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen, l.changed
}

// note records a read or write result: lease is the object as the API
// server returned it, or nil when it is absent; rv is the resourceVersion
// of that state (see observation.rv). A state already seen keeps its
// first-seen time, so re-reading an unchanged Lease never makes a silent
// holder look alive. A result older than the current observation (a read
// that was overtaken by a watch event) is ignored: resourceVersions of one
// resource compare as integers (k8s.io/apimachinery/pkg/util/resourceversion).
// When they cannot be compared the result counts as a change, which only
// makes followers wait longer.
func (l *Lock) note(lease *coordinationv1.Lease, rv string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := l.seen
	if prev.known && prev.rv != "" && rv != "" {
		if c, err := resourceversion.CompareResourceVersion(rv, prev.rv); err == nil && c < 0 {
			return
		}
	}
	if prev.known && sameState(prev.lease, lease) {
		if rv != "" {
			l.seen.rv = rv
		}
		return
	}
	if lease != nil {
		lease = lease.DeepCopy()
		l.maxDuration = max(l.maxDuration, recordDuration(lease, 0))
		if t := transitions(lease); t > l.maxToken {
			l.maxToken = t
		}
	}
	switch {
	case prev.lease != nil && lease == nil:
		l.log.Warn("the Lease was deleted; the next term's token continues from the highest seen",
			"highest_token", l.maxToken)
	case prev.lease != nil && lease != nil && prev.lease.UID != lease.UID:
		l.log.Warn("the Lease was replaced by a new object", "old_uid", prev.lease.UID, "new_uid", lease.UID,
			"transitions", transitions(lease), "highest_token", l.maxToken)
	}
	l.seen = observation{known: true, lease: lease, rv: rv, at: now}
	close(l.changed)
	l.changed = make(chan struct{})
}

// noteLease records an object read or written.
func (l *Lock) noteLease(lease *coordinationv1.Lease) { l.note(lease, lease.ResourceVersion) }

// sameState reports whether two reads show the same state of the Lease.
func sameState(a, b *coordinationv1.Lease) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.UID == b.UID && a.ResourceVersion == b.ResourceVersion
}

// highestToken is the highest spec.leaseTransitions seen so far.
func (l *Lock) highestToken() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxToken
}

// holder is spec.holderIdentity, "" when unset.
func holder(lease *coordinationv1.Lease) string {
	if lease == nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// transitions is spec.leaseTransitions, 0 when unset.
func transitions(lease *coordinationv1.Lease) int64 {
	if lease == nil || lease.Spec.LeaseTransitions == nil {
		return 0
	}
	return int64(*lease.Spec.LeaseTransitions)
}

// recordDuration is spec.leaseDurationSeconds: how long the holder promised
// to stay silent-safe. A missing or non-positive value is read as fallback
// (this candidate's own duration), so an odd record never shortens a wait.
func recordDuration(lease *coordinationv1.Lease, fallback time.Duration) time.Duration {
	if lease == nil || lease.Spec.LeaseDurationSeconds == nil || *lease.Spec.LeaseDurationSeconds <= 0 {
		return fallback
	}
	return time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
}

// Holder is the Lease's holder as a follower judges it.
type Holder struct {
	// Identity is spec.holderIdentity; empty when the Lease is absent,
	// released, or its holder has been silent for its whole lease duration.
	Identity string
	// Token is spec.leaseTransitions of the holder's term.
	Token int64
	// UID is the Lease object's UID: a different UID with a lower token
	// means the Lease was deleted and created again.
	UID types.UID
}

// judge returns the holder an observation shows at instant now, and when
// that judgement expires (zero if it never does by itself).
func (l *Lock) judge(o observation, now time.Time) (Holder, time.Time) {
	h := holder(o.lease)
	if h == "" {
		return Holder{}, time.Time{}
	}
	expires := o.at.Add(recordDuration(o.lease, l.duration))
	if !now.Before(expires) {
		return Holder{}, time.Time{}
	}
	return Holder{Identity: h, Token: transitions(o.lease), UID: o.lease.UID}, expires
}
