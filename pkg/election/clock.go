package election

import (
	"sync/atomic"
	"time"
)

// Clock tells the engine how long the machine has been suspended.
//
// Go's monotonic clock, which time.Now, time.Since and every timer use, is
// CLOCK_MONOTONIC on Linux: it stops while the host or VM is suspended,
// whereas a lease on the backend keeps expiring (golang/go#24595). A leader
// that measured its validity deadline on it alone would wake from a suspend
// still believing it leads, for as long as the suspend lasted. The engine
// therefore subtracts every suspend that overlaps a validity window from
// that window: a deadline computed from a request sent at s is moved
// earlier by Suspended(now) − Suspended(before the request was sent).
type Clock interface {
	// Suspended returns the total time the machine has spent suspended
	// since an arbitrary fixed origin. It never decreases.
	Suspended() time.Duration
}

// SystemClock returns the machine's clock: CLOCK_BOOTTIME − CLOCK_MONOTONIC
// on Linux; on systems without such a clock, a Clock that reports no suspend
// (the limit is documented in docs/safety.md).
func SystemClock() Clock { return &systemClock{} }

type systemClock struct {
	max atomic.Int64 // the largest reading so far, so readings never decrease
}

// Suspended reads the two clocks one after the other; the time between the
// two reads (well under a microsecond) can only make a reading larger, and
// the largest reading so far is returned, so an error never accumulates.
func (c *systemClock) Suspended() time.Duration {
	d := suspendedNow()
	for {
		old := c.max.Load()
		if d <= old {
			return time.Duration(old)
		}
		if c.max.CompareAndSwap(old, d) {
			return time.Duration(d)
		}
	}
}
