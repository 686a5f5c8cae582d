// Package retry is the one retry policy of the election engine and its
// backends: capped exponential backoff with jitter, computed by the
// apimachinery wait package, and a context-aware sleep.
//
// Backends do not retry failed calls (see election.Backend); what uses this
// package is the engine, between failed candidacies and failed observations,
// and background listeners that must reconnect on their own (the Redis
// backend's pub/sub wake-ups).
package retry

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Backoff yields delays that double from Min up to Max, each drawn from the
// upper half of its step ([d/2, d]) so that candidates that failed together
// drift apart. It is not safe for concurrent use.
type Backoff struct {
	template wait.Backoff
	cur      wait.Backoff
}

// New returns a backoff from min to max (both positive, min <= max).
func New(min, max time.Duration) *Backoff {
	t := wait.Backoff{Duration: min, Factor: 2, Steps: math.MaxInt32, Cap: max}
	return &Backoff{template: t, cur: t}
}

// Next returns the next delay: between half and all of the current step.
func (b *Backoff) Next() time.Duration {
	d := b.cur.Step()
	half := d / 2
	return half + rand.N(half+1)
}

// Reset starts the sequence over from Min; call it after a success.
func (b *Backoff) Reset() { b.cur = b.template }

// Sleep waits for d or until ctx ends, whose error it returns.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
