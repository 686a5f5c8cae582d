package election

import "time"

// Metrics receives the engine's measurements. Implementations must be safe
// for concurrent use; pkg/metrics provides the Prometheus one.
type Metrics interface {
	// SetLeader records whether this candidate now claims leadership.
	SetLeader(isLeader bool)
	// Takeover records the time from seeing the predecessor go to this
	// candidate leading; kind is Handover, Failover or "" (unknown).
	Takeover(d time.Duration, kind string)
	// SteppedDown records why this candidate stopped leading: "resigned",
	// "deadline", "lost" or "shutdown".
	SteppedDown(reason string)
	// BackendError counts a failed backend operation ("grant", "campaign",
	// "renew", "resign", "observe").
	BackendError(op string)
}

type nopMetrics struct{}

func (nopMetrics) SetLeader(bool)                 {}
func (nopMetrics) Takeover(time.Duration, string) {}
func (nopMetrics) SteppedDown(string)             {}
func (nopMetrics) BackendError(string)            {}
