package election

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors shared by every backend.
var (
	// ErrLost means the backend says this candidacy no longer exists (its
	// lease or lock is gone). The engine steps down at once and starts over.
	ErrLost = errors.New("election: candidacy lost")
	// ErrNotLeader is returned by Engine.Resign when there is nothing to resign.
	ErrNotLeader = errors.New("election: not leader")
	// ErrDenied means the backend refused the credentials or the permissions
	// the election needs. The engine keeps retrying with its backoff (an
	// operator may fix the permissions) but reports it in Status.Problem
	// and logs it once per change.
	ErrDenied = errors.New("election: permission denied")
)

// Params is what every backend is told about the candidate, once, when it
// is built. The backend validates the parts it has limits on (for example
// etcd's minimum and whole-second lease TTL) and returns a *ConfigError
// naming the field.
type Params struct {
	// Election names the election; it is part of every key. Required.
	Election string
	// Identity names this candidate; peers see it as the leader's name.
	// Required.
	Identity string
	// TTL is the lifetime of the lease or lock; a leader renews it about
	// every TTL/3, and a crashed leader is replaced after about TTL.
	TTL time.Duration
}

// Validate checks what every backend needs: a name, an identity and a
// positive TTL.
func (p Params) Validate() error {
	switch {
	case p.Election == "":
		return Invalid("Election", "is required")
	case p.Identity == "":
		return Invalid("Identity", "is required")
	case p.TTL <= 0:
		return Invalid("TTL", "%v must be positive", p.TTL)
	}
	return nil
}

// ConfigError says which setting is bad, by its Go field name (Params.TTL is
// "TTL", an options struct's Endpoints is "Endpoints"), so that a command
// line can name its own flag for it. Msg follows the field's name; it may
// refer to other fields as {Field}.
type ConfigError struct {
	Field string
	Msg   string
}

// Invalid returns a *ConfigError for field with a formatted message.
func Invalid(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Error names fields by their Go names.
func (e *ConfigError) Error() string { return e.Format(func(f string) string { return f }) }

// Format renders the error with every field (the subject and any {Field}
// in Msg) replaced by name(field), for example a flag name.
func (e *ConfigError) Format(name func(field string) string) string {
	msg := e.Msg
	for {
		i := strings.Index(msg, "{")
		j := strings.Index(msg, "}")
		if i < 0 || j < i {
			break
		}
		msg = msg[:i] + name(msg[i+1:j]) + msg[j+1:]
	}
	sep := " "
	if strings.HasPrefix(msg, ":") || strings.HasPrefix(msg, ",") || strings.HasPrefix(msg, "/") {
		sep = ""
	}
	return name(e.Field) + sep + msg
}

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

// Backend is one storage system's implementation of an election, for the
// Params it was built with. It is chosen at start-up and never switched.
//
// The contract, which the conformance suite in pkg/election/electiontest
// checks against real servers:
//
//   - Backends do not retry. Every method makes its attempt and returns the
//     error; the engine retries, with one backoff, and decides readiness
//     from the errors: any failed call makes the instance not ready and
//     makes it name no leader until the backend answers again. Waiting for
//     a predecessor to go (Campaign) is not retrying; a failure while
//     waiting is returned.
//   - Errors name what failed and where (the endpoint or node) and keep the
//     underlying cause (connection refused, a timeout, an ACL denial)
//     wrapped. ErrLost (wrapped) means the candidacy is gone; ErrDenied
//     (wrapped) means credentials or permissions were refused; anything else
//     is a transient failure.
//   - A backend validates its own limits at construction and contacts
//     nothing there; Candidate is the first call that does.
type Backend interface {
	// Name is the backend's name as it appears in status and metrics.
	Name() string
	// Candidate starts a fresh candidacy (for etcd: grants a lease). It
	// contacts the backend, so an unreachable backend is an error here. It
	// returns the proof of liveness the call gave, which may be zero when the
	// backend holds nothing until it wins (Redis).
	Candidate(ctx context.Context) (Candidacy, Validity, error)
	// Observe calls fn with the current leader every time it changes (and once
	// at start), until ctx ends or the backend fails. It returns that error,
	// or ctx.Err(); it never retries on its own.
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
	// Campaign blocks until this candidacy leads, ctx ends, or the backend
	// fails. Before it returns a Term it has re-checked that the candidacy
	// still exists (its key or lock did not vanish while it waited).
	Campaign(ctx context.Context) (Term, error)
	// Renew refreshes the candidacy's lease or lock once. A zero Validity with
	// a nil error means there was nothing to refresh. ErrLost (wrapped) means
	// the candidacy is gone; any other error may be transient.
	Renew(ctx context.Context) (Validity, error)
	// Resign gives up leadership (if held) and releases the candidacy's lease
	// or lock, so a waiting candidate can take over at once.
	Resign(ctx context.Context) error
}
