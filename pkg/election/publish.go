package election

import (
	"context"
	"errors"
	"sync"
)

// Publisher makes the election's status visible somewhere: the HTTP API,
// pod labels and a readiness gate, Kubernetes events, metrics. It only
// reads the stream (it never talks to a backend), and nothing it does can
// delay the engine: a slow publisher simply sees the latest status when it
// looks again.
//
// A consumer that must see every change, including states that lasted
// microseconds (an audit history), uses Config.OnStatus instead, which the
// engine calls synchronously on every change.
type Publisher interface {
	// Publish follows src until ctx ends. It returns nil then, or the
	// error that stopped it earlier.
	Publish(ctx context.Context, src Source) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, src Source) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, src Source) error { return f(ctx, src) }

// Publish runs every publisher on src until ctx ends and returns their
// errors joined. A publisher that fails does not stop the others.
func Publish(ctx context.Context, src Source, pubs ...Publisher) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, p := range pubs {
		wg.Go(func() {
			if err := p.Publish(ctx, src); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// WhileLeading runs fn each time this instance starts to lead, with a
// context that is cancelled the moment the status says it no longer leads
// that term (step-down is published before any backend call, so the
// cancellation is not delayed by an unreachable backend). It waits for fn
// to return before it looks for the next term, so at most one fn runs at a
// time, and it returns when ctx ends and fn has returned.
//
// fn is given the status it started with; its FencingToken is the term's
// fencing token, which work done by fn should carry to whatever it writes.
// Cancellation is cooperative: what fn does after its context ends is not
// covered by the election, which is why downstream systems compare tokens.
func WhileLeading(ctx context.Context, src Source, fn func(ctx context.Context, term Status)) {
	for {
		st, changed := src.Status()
		if st.IsLeader {
			runTerm(ctx, src, st, fn)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// runTerm runs fn for the term that st leads, until that term ends.
func runTerm(ctx context.Context, src Source, st Status, fn func(context.Context, Status)) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(tctx, st)
	}()
	for {
		cur, changed := src.Status()
		if !cur.IsLeader || cur.FencingToken != st.FencingToken {
			cancel()
			<-done
			return
		}
		select {
		case <-changed:
		case <-done:
			// fn returned on its own; wait for the term to end before
			// starting fn again.
			for {
				cur, changed = src.Status()
				if !cur.IsLeader || cur.FencingToken != st.FencingToken {
					return
				}
				select {
				case <-changed:
				case <-ctx.Done():
					return
				}
			}
		case <-ctx.Done():
			cancel()
			<-done
			return
		}
	}
}
