package redislock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// candidacy is one attempt to lead. It holds a lock value only between a
// won Campaign and Resign or the loss of the lock.
type candidacy struct {
	b *Backend

	mu       sync.Mutex
	value    string // the held lock's value; empty when not leading
	token    int64  // the held term's fencing token
	resigned bool
}

var _ election.Candidacy = (*candidacy)(nil)

// attempt is the outcome of one acquisition round.
type attempt struct {
	won   bool
	value string
	term  election.Term
	// Why it failed, which decides when to try again.
	partial     bool          // got some nodes but no usable majority
	unreachable bool          // too few nodes answered to ever reach a majority
	warming     bool          // a node grants nothing yet after losing its data
	expires     time.Duration // earliest expiry of another holder's lock; 0 if unknown
	failed      int           // nodes that did not answer
	err         error         // first node error
}

// Campaign implements election.Candidacy. It attempts until it holds the
// lock on a majority of nodes within the validity time: at once on a release
// message, when the holder's lock is due to expire, and at least every poll
// interval in case a message was lost. Waiting for the holder is not
// retrying: when too few nodes answer, Campaign returns the error and the
// engine retries with its backoff.
func (c *candidacy) Campaign(ctx context.Context) (election.Term, error) {
	c.mu.Lock()
	leading, resigned := c.value != "", c.resigned
	c.mu.Unlock()
	switch {
	case resigned:
		return election.Term{}, fmt.Errorf("redis: campaign after resign: %w", election.ErrLost)
	case leading:
		return election.Term{}, errors.New("redis: campaign while already leading")
	}

	wake, stop := c.b.subscribe(ctx, func(p string) bool { return p == "released" })
	defer stop()
	// woke is when the wait before the current attempt ended: a release
	// message, the holder's expiry, or a poll. If that attempt wins after
	// another candidate held the lock, it is when the vacancy was seen.
	var woke time.Time
	// held: the last attempt found another candidate holding the lock;
	// released: a release message ended the wait after it.
	var held, released bool
	for {
		a, err := c.attempt(ctx)
		if err != nil {
			return election.Term{}, err
		}
		if a.won {
			if held {
				a.term.Vacant, a.term.Kind = woke, election.Failover
				if released {
					a.term.Kind = election.Handover
				}
			}
			return c.take(ctx, a)
		}
		if a.unreachable {
			if ctx.Err() != nil {
				return election.Term{}, ctx.Err()
			}
			return election.Term{}, classify(fmt.Errorf("redis: reached %d of %d nodes, need %d: %w",
				len(c.b.nodes)-a.failed, len(c.b.nodes), c.b.quorum, a.err))
		}
		held = !a.partial && !a.warming
		wait, waitWake := c.b.poll, wake
		switch {
		case a.partial:
			// Candidates that split the nodes between them back off by a
			// random amount, ignoring the release messages their own
			// rollbacks publish, so one of them gets ahead.
			wait, waitWake = rand.N(max(c.b.poll/10, time.Millisecond)), nil
		case a.expires > 0:
			wait = min(wait, a.expires+time.Millisecond)
		}
		if released, err = waitForWake(ctx, wait, waitWake); err != nil {
			return election.Term{}, err
		}
		woke = time.Now()
	}
}

// take records a won attempt, unless the candidacy resigned or the caller
// gave up meanwhile, in which case the lock is released again.
func (c *candidacy) take(ctx context.Context, a attempt) (election.Term, error) {
	c.mu.Lock()
	resigned := c.resigned
	if !resigned && ctx.Err() == nil {
		c.value, c.token = a.value, a.term.Token
	}
	c.mu.Unlock()
	switch {
	case resigned:
		c.b.releaseDetached(ctx, a.value)
		return election.Term{}, fmt.Errorf("redis: resigned during campaign: %w", election.ErrLost)
	case ctx.Err() != nil:
		c.b.releaseDetached(ctx, a.value)
		return election.Term{}, ctx.Err()
	}
	c.b.logger.Info("acquired the lock", "token", a.term.Token)
	return a.term, nil
}

// attempt runs one acquisition round on every node. It fails only if no
// lock value can be made.
func (c *candidacy) attempt(ctx context.Context) (attempt, error) {
	b := c.b
	value, err := newValue(b.identity)
	if err != nil {
		return attempt{}, err
	}
	type reply struct {
		held    bool
		counter int64 // the token issued, or the node's counter if not held
		pttl    time.Duration
		warming bool // the node grants nothing yet (see acquire.lua)
	}
	seen := b.seen.Load()
	ttlMillis := b.ttl.Milliseconds()
	sent := time.Now()
	res := fanOut(ctx, b, func(ctx context.Context, _ int, n Client) (reply, error) {
		r, err := b.scripts.acquire.Run(ctx, n, []string{b.keys.lock, b.keys.counter, b.keys.events, b.keys.since},
			value, ttlMillis, seen).Int64Slice()
		if err != nil {
			return reply{}, err
		}
		if len(r) < 2 || (r[0] == 0 && len(r) < 3) {
			return reply{}, fmt.Errorf("acquire script returned %v", r)
		}
		rep := reply{held: r[0] == 1, counter: r[1]}
		if !rep.held {
			rep.pttl = time.Duration(r[2]) * time.Millisecond
			rep.warming = len(r) > 3 && r[3] == 1
		}
		return rep, nil
	})

	a := attempt{value: value}
	won, failed := 0, 0
	counters := make([]int64, len(res)) // -1: unknown
	for i, r := range res {
		counters[i] = -1
		if r.err != nil {
			failed++
			a.err = keepFirst(a.err, r.err)
			continue
		}
		b.noteToken(r.val.counter)
		counters[i] = r.val.counter
		a.warming = a.warming || r.val.warming
		if r.val.held {
			won++
			a.term.Token = max(a.term.Token, r.val.counter)
		} else if r.val.pttl > 0 && (a.expires == 0 || r.val.pttl < a.expires) {
			a.expires = r.val.pttl
		}
	}
	if won >= b.quorum && time.Since(sent) < b.validity && c.commit(ctx, a.term.Token, counters) &&
		time.Since(sent) < b.validity {
		a.won = true
		a.term.Validity = election.Validity{Sent: sent, TTL: b.validity}
		return a, nil
	}
	if won > 0 {
		b.releaseDetached(ctx, value)
		a.partial = true
	} else if failed > len(b.nodes)-b.quorum {
		a.unreachable = true
	}
	a.failed = failed
	return a, nil
}

// commit makes sure a majority of nodes has a counter at or above token
// before the term is used, raising the counters of nodes that are behind or
// did not answer. Any later majority shares a node with this one, and that
// node's counter makes the next token larger (see the package doc).
func (c *candidacy) commit(ctx context.Context, token int64, counters []int64) bool {
	b := c.b
	have := 0
	for _, n := range counters {
		if n >= token {
			have++
		}
	}
	if have >= b.quorum {
		return true
	}
	res := fanOut(ctx, b, func(ctx context.Context, i int, n Client) (bool, error) {
		if counters[i] >= token {
			return false, nil // already counted
		}
		got, err := b.scripts.raise.Run(ctx, n, []string{b.keys.counter}, token).Int64()
		return err == nil && got >= token, err
	})
	for _, r := range res {
		if r.val {
			have++
		}
	}
	return have >= b.quorum
}

// Renew implements election.Candidacy: it extends the lock on every node and
// succeeds when a majority still held it. The lock is lost when so many
// nodes say it is gone that no majority can hold it; nodes that do not
// answer make the error transient.
func (c *candidacy) Renew(ctx context.Context) (election.Validity, error) {
	c.mu.Lock()
	value, token := c.value, c.token
	c.mu.Unlock()
	if value == "" {
		return election.Validity{}, nil
	}
	b := c.b
	ttlMillis := b.ttl.Milliseconds()
	sent := time.Now()
	res := fanOut(ctx, b, func(ctx context.Context, _ int, n Client) (int64, error) {
		return b.scripts.renew.Run(ctx, n, []string{b.keys.lock, b.keys.counter}, value, ttlMillis, token).Int64()
	})
	held, gone := 0, 0
	var firstErr error
	for _, r := range res {
		switch {
		case r.err != nil:
			firstErr = keepFirst(firstErr, r.err)
		case r.val == 1:
			held++
		default:
			gone++
		}
	}
	if held >= b.quorum {
		return election.Validity{Sent: sent, TTL: b.validity}, nil
	}
	if gone > len(b.nodes)-b.quorum {
		c.mu.Lock()
		if c.value == value {
			c.value, c.token = "", 0
		}
		c.mu.Unlock()
		b.releaseDetached(ctx, value) // free the nodes that still hold it
		b.logger.Warn("lost the lock", "token", token, "held", held, "nodes", len(b.nodes))
		return election.Validity{}, fmt.Errorf("redis: lock %s gone on %d of %d nodes: %w",
			b.keys.lock, gone, len(b.nodes), election.ErrLost)
	}
	return election.Validity{}, classify(fmt.Errorf("redis: renewed on %d of %d nodes, need %d: %w",
		held, len(b.nodes), b.quorum, firstErr))
}

// Resign implements election.Candidacy: it deletes the lock on every node
// (publishing a release so waiters retry at once) and ends the candidacy.
// It fails only if too few nodes answered for a successor to take over now;
// the lock then expires on its own.
func (c *candidacy) Resign(ctx context.Context) error {
	c.mu.Lock()
	value := c.value
	c.value, c.token, c.resigned = "", 0, true
	c.mu.Unlock()
	if value == "" {
		return nil
	}
	answered, err := c.b.release(ctx, value)
	if answered < c.b.quorum {
		return fmt.Errorf("redis: released the lock on %d of %d nodes: %w", answered, len(c.b.nodes), err)
	}
	c.b.logger.Info("released the lock")
	return nil
}
