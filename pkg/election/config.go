package election

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults, written once.
const (
	DefaultTTL           = 10 * time.Second
	DefaultDrift         = 0.01
	DefaultMargin        = 300 * time.Millisecond
	DefaultRetryMin      = 100 * time.Millisecond
	DefaultRetryMax      = 5 * time.Second
	DefaultResignTimeout = 5 * time.Second
)

// Config configures an Engine. Zero fields take the defaults given.
type Config struct {
	// Election names the election; required.
	Election string
	// Identity names this candidate; required. Peers and applications see it.
	Identity string
	// Backend implements the election; required.
	Backend Backend
	// TTL is the lease or lock lifetime. Default DefaultTTL.
	TTL time.Duration
	// Drift is the fraction of TTL allowed for clock-rate error between this
	// process and the backend. Default DefaultDrift (1%).
	Drift float64
	// Margin covers scheduling delay: leadership is given up this long
	// before the lease could expire. Default DefaultMargin.
	Margin time.Duration
	// RenewInterval is how often the lease is renewed. Default TTL/3.
	RenewInterval time.Duration
	// RetryMin and RetryMax bound the exponential backoff between failed
	// attempts to start a candidacy or observe the leader. Defaults
	// DefaultRetryMin and min(DefaultRetryMax, TTL/2).
	RetryMin, RetryMax time.Duration
	// ResignTimeout bounds a resignation. Default DefaultResignTimeout.
	ResignTimeout time.Duration
	// ResignHoldoff is how long a candidate that resigned on request waits
	// before campaigning again, so a peer can take over. Default TTL.
	ResignHoldoff time.Duration
	// DuplicateAfter is how long the backend must show a leader with this
	// candidate's identity that is not this candidate before the engine
	// reports a duplicate identity. Our own key can outlive a step-down by
	// up to a TTL (two and more if etcd's Raft leader changes meanwhile),
	// hence the default of 3 × TTL.
	DuplicateAfter time.Duration
	// Logger receives the engine's logs. Default: discard.
	Logger *slog.Logger
	// Metrics receives measurements. Default: none.
	Metrics Metrics
	// Gate, if set, decides whether this candidate may stand (see Gate).
	// Default: always.
	Gate Gate
	// BeforeRelease, if set, is called after a leader has stepped down
	// (the step-down is already published) and before the engine releases
	// its lease or lock, so work done under the term can be stopped before
	// a successor can win: the exec wrapper waits there for its command to
	// exit. It delays the release, never the step-down; it must return
	// before the lease could expire (within Margin), or the lock simply
	// expires instead of being handed over.
	BeforeRelease func()
	// Clock reports time the machine spent suspended, which the engine
	// subtracts from validity windows (see Clock). Default SystemClock().
	Clock Clock
	// OnStatus, if set, is called with every status change, in order, before
	// readers of Status see it. Readers of Status may miss short-lived
	// states; OnStatus does not, which is what an audit history needs. It
	// must not block.
	OnStatus func(Status)
	// OnCandidacy, if set and the backend implements Reclaimer, is called
	// with the handle of every new candidacy before it campaigns, so that
	// a later process of this candidate can release it after a crash
	// (Reclaimer). It runs in the engine's loop before anything is led:
	// keep it short (a small local file write).
	OnCandidacy func(handle string)
	// Generation is the version of the workload this candidate runs, as an
	// increasing number (for example the Helm release revision); 0 (the
	// default) publishes none. With a backend implementing Generations, a
	// waiting candidate queues again behind a newer-generation candidate
	// queued behind it, so a rolling update moves leadership once.
	Generation int64
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Drift == 0 {
		c.Drift = DefaultDrift
	}
	if c.Margin == 0 {
		c.Margin = DefaultMargin
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = c.TTL / 3
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = min(DefaultRetryMax, c.TTL/2)
	}
	if c.ResignTimeout == 0 {
		c.ResignTimeout = DefaultResignTimeout
	}
	if c.ResignHoldoff == 0 {
		c.ResignHoldoff = c.TTL
	}
	if c.DuplicateAfter == 0 {
		c.DuplicateAfter = 3 * c.TTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	if c.Clock == nil {
		c.Clock = SystemClock()
	}
	return c
}

// checkInterval is how often the engine's loop wakes even when nothing
// happens: to notice a validity deadline that passed while the machine was
// suspended (its timers, on CLOCK_MONOTONIC, fire late by the suspend), and
// to show it is alive (Healthy).
func (c Config) checkInterval() time.Duration { return min(c.RenewInterval, maxCheckInterval) }

const maxCheckInterval = 500 * time.Millisecond

// candidateTimeout bounds a call that starts a candidacy, so an unanswered
// backend never holds the loop: a grant slower than a TTL would be close to
// expiry anyway.
func (c Config) candidateTimeout() time.Duration { return c.TTL }

// stallAfter is how long the loop may go without a heartbeat before Healthy
// reports it stuck: longer than any call the loop itself waits for (a
// candidacy start, a resignation) plus two heartbeats.
func (c Config) stallAfter() time.Duration {
	return c.candidateTimeout() + c.ResignTimeout + 2*c.checkInterval() + time.Second
}

// validity is how long after an acknowledged request was sent this
// candidate may still claim leadership.
func (c Config) validity(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl)*(1-c.Drift)) - c.Margin
}

// Validate applies the defaults and checks the configuration as New does,
// except for Backend, so a command line can reject bad timings before it
// builds anything. Errors about a field are *ConfigError.
func (c Config) Validate() error { return c.withDefaults().validate() }

// validate checks the timing invariants: a renewal must fit well inside the
// window in which leadership may be claimed, or the engine would step down
// between renewals of a perfectly healthy lease.
func (c Config) validate() error {
	switch {
	case c.Election == "":
		return Invalid("Election", "is required")
	case c.Identity == "":
		return Invalid("Identity", "is required")
	case c.TTL < 0:
		return Invalid("TTL", "%v must be positive", c.TTL)
	case c.Margin < 0 || c.RenewInterval < 0 || c.RetryMin < 0 || c.RetryMax < 0 ||
		c.ResignTimeout < 0 || c.ResignHoldoff < 0 || c.DuplicateAfter < 0:
		return errors.New("election: durations must not be negative")
	case c.Drift < 0 || c.Drift >= 0.5:
		return fmt.Errorf("election: drift %v must be in [0, 0.5)", c.Drift)
	case c.RetryMin > c.RetryMax:
		return fmt.Errorf("election: retry minimum %v exceeds maximum %v", c.RetryMin, c.RetryMax)
	}
	if v := c.validity(c.TTL); v < 2*c.RenewInterval {
		return Invalid("TTL", "%v leaves a validity window of %v (after %.0f%% drift and %v margin), "+
			"which must be at least twice the renew interval %v", c.TTL, v, c.Drift*100, c.Margin, c.RenewInterval)
	}
	return nil
}
