package election

import "time"

// Metrics receives the engine's measurements. Implementations must be safe
// for concurrent use; pkg/metrics provides the Prometheus one.
type Metrics interface {
	// SetLeader records whether this candidate now claims leadership.
	SetLeader(isLeader bool)
	// SetState records the engine's state (published, so Following is
	// reported as such).
	SetState(s State)
	// Takeover records the time from seeing the predecessor go to this
	// candidate leading; kind is Handover, Failover or "" (unknown).
	Takeover(d time.Duration, kind string)
	// SteppedDown records why this candidate stopped leading.
	SteppedDown(reason StepDownReason)
	// BackendError counts a failed backend operation (one of BackendOps).
	BackendError(op string)
}

// BackendOps are the operations BackendError counts.
var BackendOps = []string{"grant", "campaign", "renew", "resign", "observe"}

type nopMetrics struct{}

func (nopMetrics) SetLeader(bool)                 {}
func (nopMetrics) SetState(State)                 {}
func (nopMetrics) Takeover(time.Duration, string) {}
func (nopMetrics) SteppedDown(StepDownReason)     {}
func (nopMetrics) BackendError(string)            {}
