package redislock

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/pkg/election/internal/retry"
)

// healthInterval is how long a pub/sub connection may stay silent before it
// is pinged, so a dead connection is noticed and replaced.
const healthInterval = 5 * time.Second

// subscribe listens on the events channel of every node and turns each
// message accept approves, and each (re)subscription, into a wake-up on the
// returned channel. A (re)subscription wakes too because messages may have
// been missed while the connection was down. stop ends the listeners and
// waits for them.
func (b *Backend) subscribe(ctx context.Context, accept func(payload string) bool) (wake <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan struct{}, 1)
	notify := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	var (
		mu      sync.Mutex
		stopped bool
		subs    []*redis.PubSub
		wg      sync.WaitGroup
	)
	for _, c := range b.nodes {
		wg.Go(func() {
			// Subscribe dials, so it runs here rather than delaying the caller.
			ps := c.Subscribe(ctx, b.keys.events)
			mu.Lock()
			if stopped {
				mu.Unlock()
				_ = ps.Close()
				return
			}
			subs = append(subs, ps)
			mu.Unlock()
			listen(ctx, ps, accept, notify)
		})
	}
	return ch, func() {
		cancel()
		mu.Lock()
		stopped = true
		for _, ps := range subs {
			// Closing is what interrupts a blocked read.
			_ = ps.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// listen receives from ps until ctx ends or ps is closed. go-redis
// reconnects and resubscribes on the next receive after an error.
func listen(ctx context.Context, ps *redis.PubSub, accept func(string) bool, notify func()) {
	backoff := retry.New(50*time.Millisecond, 2*time.Second)
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet channel: a ping proves the connection (its reply
				// arrives as a Pong), a failed ping makes the next receive
				// reconnect.
				_ = ps.Ping(ctx)
				continue
			}
			if retry.Sleep(ctx, backoff.Next()) != nil {
				return
			}
			continue
		}
		backoff.Reset()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				notify()
			}
		case *redis.Message:
			if accept(m.Payload) {
				notify()
			}
		}
	}
}

// waitFor waits for d to pass, a wake-up (a nil wake never fires), or the
// end of ctx, whose error it returns.
func waitFor(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	_, err := waitForWake(ctx, d, wake)
	return err
}

// waitForWake is waitFor that also says whether a wake-up ended the wait.
func waitForWake(ctx context.Context, d time.Duration, wake <-chan struct{}) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.C:
		return false, nil
	case <-wake:
		return true, nil
	}
}
