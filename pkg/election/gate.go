package election

// Gate decides whether this candidate may stand for election at all: a
// health gate (pkg/apphealth) says no while the application it guards is
// unhealthy. A candidate that may not stand leaves the queue (its
// candidacy is resigned, so it can never be chosen), and a leader that may
// no longer stand steps down with ReasonUnhealthy and resigns, so a
// standing peer takes over at once.
//
// The engine reads a Gate from its own loop, so Eligibility must return at
// once: it reports the last verdict, never performs a check itself.
type Gate interface {
	// Eligibility returns the current verdict and a channel closed when it
	// next changes.
	Eligibility() (Eligibility, <-chan struct{})
}

// Eligibility is a Gate's verdict.
type Eligibility struct {
	// Eligible means the candidate may stand.
	Eligible bool
	// Health names the guarded application's state for /status, e.g.
	// "healthy", "unhealthy" or "unknown" (no verdict yet).
	Health string
	// Reason says why the candidate may not stand; empty when Eligible.
	Reason string
}

// alwaysEligible is the verdict without a gate.
var alwaysEligible = Eligibility{Eligible: true}

// eligibility reads cfg's gate; without one the candidate always stands
// and the channel is nil (never ready).
func (c Config) eligibility() (Eligibility, <-chan struct{}) {
	if c.Gate == nil {
		return alwaysEligible, nil
	}
	return c.Gate.Eligibility()
}
