package redislock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// candidacy is one attempt to lead. It holds a lock value only between a
// won Campaign and Resign or the loss of the lock.
type candidacy struct {
	b *Backend
	// member names the candidacy in the line and in its lock values
	// (newMember); it is the Reclaimer handle.
	member string
	// gen is the generation WaitNewer published; 0 for none.
	gen atomic.Int64

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
	partial       bool          // got some nodes but no usable majority
	heldElsewhere bool          // another value holds a majority of the nodes
	unreachable   bool          // too few nodes answered to ever reach a majority
	warming       bool          // a node grants nothing yet after losing its data
	expires       time.Duration // earliest expiry of another holder's lock; 0 if unknown
	failed        int           // nodes that did not answer
	err           error         // first node error
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
		held = a.heldElsewhere || (!a.partial && !a.warming)
		wait, waitWake := c.b.poll, wake
		switch {
		case a.partial && !a.heldElsewhere:
			// Candidates that split the nodes between them back off by a
			// random amount, ignoring release messages, so one of them
			// gets ahead. A round that lost to a majority holder instead
			// waits like any waiter (its rollback announced nothing), for
			// the holder's release or expiry: no retry storm while a
			// restarted master lets each waiter take it alone.
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
		c.b.releaseDetached(ctx, a.value, true)
		return election.Term{}, fmt.Errorf("redis: resigned during campaign: %w", election.ErrLost)
	case ctx.Err() != nil:
		c.b.releaseDetached(ctx, a.value, true)
		return election.Term{}, ctx.Err()
	}
	c.b.logger.Info("acquired the lock", "token", a.term.Token)
	return a.term, nil
}

// acquireReply is one node's answer to the acquire script.
type acquireReply struct {
	held    bool
	counter int64 // the token issued, or the node's counter if not held
	pttl    time.Duration
	why     int64  // why not held: one of the why* constants
	warming bool   // the node grants nothing yet (see acquire.lua)
	holder  string // the value that holds the lock instead
}

// Why acquire.lua did not grant the lock.
const (
	whyHeld     = 0 // another value holds it
	whyWarming  = 1 // the node grants nothing yet after losing its data
	whyReserved = 2 // a handover reserved it for another candidacy
	whyNewer    = 3 // a candidate of a newer generation waits in line
)

// acquireKeys are acquire.lua's KEYS.
func (c *candidacy) acquireKeys() []string {
	k := c.b.keys
	return []string{k.lock, k.counter, k.since, k.line, k.next}
}

// attempt runs one acquisition round on every node. It fails only if no
// lock value can be made.
func (c *candidacy) attempt(ctx context.Context) (attempt, error) {
	b := c.b
	value, err := newValue(b.identity, c.member)
	if err != nil {
		return attempt{}, err
	}
	seen := b.seen.Load()
	ttlMillis := b.ttl.Milliseconds()
	sent := time.Now()
	res := fanOut(ctx, b, func(ctx context.Context, i int, n Client) (acquireReply, error) {
		if err := b.ensureChecked(ctx, i, n); err != nil {
			return acquireReply{}, err
		}
		r, err := b.scripts.acquire.Run(ctx, n, c.acquireKeys(), value, ttlMillis, seen, c.member, c.gen.Load(),
			b.identity, "0").Slice()
		if err != nil {
			return acquireReply{}, err
		}
		return parseAcquire(r)
	})

	a := attempt{value: value}
	won, failed := 0, 0
	holders := map[string]int{}
	// granted[i]: the token node i issued for this round; -1 where it
	// did not grant the lock.
	granted := make([]int64, len(res))
	for i, r := range res {
		granted[i] = -1
		if r.err != nil {
			failed++
			a.err = keepFirst(a.err, r.err)
			continue
		}
		b.noteToken(r.val.counter)
		a.warming = a.warming || r.val.warming
		if r.val.held {
			granted[i] = r.val.counter
			won++
			a.term.Token = max(a.term.Token, r.val.counter)
		} else if r.val.pttl > 0 && (a.expires == 0 || r.val.pttl < a.expires) {
			a.expires = r.val.pttl
		}
		holder := r.val.holder
		switch r.val.why {
		case whyReserved:
			// Reserved for a handover's successor: as good as held.
			holder = "\x00reserved"
		case whyNewer:
			holder = "\x00newer generation"
		}
		if holder != "" {
			holders[holder]++
			a.heldElsewhere = a.heldElsewhere || holders[holder] >= b.quorum
		}
	}
	if won >= b.quorum && time.Since(sent) < b.validity && c.commit(ctx, a.term.Token, granted) &&
		time.Since(sent) < b.validity {
		a.won = true
		a.term.Validity = election.Validity{Sent: sent, TTL: b.validity}
		return a, nil
	}
	if won > 0 {
		b.releaseDetached(ctx, value, false)
		a.partial = true
	} else if failed > len(b.nodes)-b.quorum {
		a.unreachable = true
	}
	a.failed = failed
	return a, nil
}

// commit writes the round's token to the counters of the nodes that
// granted it (acquire.lua only proposes), and succeeds when a majority of
// the nodes has it before the term is used. granted holds each node's
// proposal, or -1 where it did not grant.
//
// Only granting nodes count: each of them held this round's lock from its
// grant until the term began, so a later term that wins on such a node was
// granted there after this term began, when the counter was already at
// token, and proposes more. A node that did not grant may have granted a
// competing round before this one, whose token this commit must not rely
// on (see the package doc and TestRedlockTokenOrderCountsOnlyGrantingNodes).
func (c *candidacy) commit(ctx context.Context, token int64, granted []int64) bool {
	b := c.b
	res := fanOut(ctx, b, func(ctx context.Context, i int, n Client) (bool, error) {
		if granted[i] < 0 {
			return false, nil
		}
		got, err := b.scripts.raise.Run(ctx, n, []string{b.keys.counter, b.keys.events, b.keys.next, b.keys.line}, token,
			c.member, b.identity).Int64()
		return err == nil && got >= token, err
	})
	have := 0
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
	tries := make([]int, len(b.nodes)) // each entry is written by its node's goroutine only
	res := fanOut(ctx, b, func(ctx context.Context, i int, n Client) (int64, error) {
		tries[i]++
		if err := b.ensureChecked(ctx, i, n); err != nil {
			return 0, err
		}
		r, err := b.scripts.renew.Run(ctx, n, []string{b.keys.lock, b.keys.counter, b.keys.since, b.keys.next},
			value, ttlMillis, token, "1").Int64()
		if r == 1 && tries[i] > 1 {
			// The first try may have taken the lock back before its
			// connection failed; then "extended" proves nothing either.
			r = 2
		}
		return r, err
	})
	held, gone := 0, 0
	var firstErr error
	for i, r := range res {
		switch {
		case r.err != nil:
			firstErr = keepFirst(firstErr, r.err)
		case r.val == 1:
			held++
		case r.val == 2:
			// Taken back: it was missing, so it proves nothing about the
			// time since the last renewal; from the next renewal on it
			// counts again.
			gone++
			b.logger.Info("took the lock back on a node that had lost it", "node", b.names[i], "token", token)
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
		b.releaseDetached(ctx, value, true) // free the nodes that still hold it
		b.logger.Warn("lost the lock", "token", token, "held", held, "nodes", len(b.nodes))
		return election.Validity{}, fmt.Errorf("redis: lock %s gone on %d of %d nodes: %w",
			b.keys.lock, gone, len(b.nodes), election.ErrLost)
	}
	return election.Validity{}, classify(fmt.Errorf("redis: renewed on %d of %d nodes, need %d: %w",
		held, len(b.nodes), b.quorum, firstErr))
}

// Resign implements election.Candidacy: it deletes the lock on every node
// (publishing a release so waiters retry at once), leaves the line, and
// ends the candidacy. A switchover's reservation for this identity stays:
// the candidate's next candidacy may take it.
// It fails only if too few nodes answered for a successor to take over now;
// the lock then expires on its own. A candidacy that did not lead fails
// never: its entry in line expires on its own within a TTL.
func (c *candidacy) Resign(ctx context.Context) error {
	c.mu.Lock()
	value := c.value
	c.value, c.token, c.resigned = "", 0, true
	c.mu.Unlock()
	answered, err := c.b.release(ctx, value, true, c.member)
	if value == "" {
		if err != nil {
			c.b.logger.Debug("leaving the line failed; the entry expires on its own", "err", err)
		}
		return nil
	}
	if answered < c.b.quorum {
		return fmt.Errorf("redis: released the lock on %d of %d nodes: %w", answered, len(c.b.nodes), err)
	}
	c.b.logger.Info("released the lock")
	return nil
}

// parseAcquire reads the acquire script's reply (see acquire.lua).
func parseAcquire(r []any) (acquireReply, error) {
	ints := make([]int64, 0, 4)
	var holder string
	for i, v := range r {
		switch v := v.(type) {
		case int64:
			ints = append(ints, v)
		case string:
			if i == 4 {
				holder = v
				continue
			}
			return acquireReply{}, fmt.Errorf("acquire script returned %v", r)
		default:
			return acquireReply{}, fmt.Errorf("acquire script returned %v", r)
		}
	}
	if len(ints) < 2 || (ints[0] == 0 && len(ints) < 4) {
		return acquireReply{}, fmt.Errorf("acquire script returned %v", r)
	}
	rep := acquireReply{held: ints[0] == 1, counter: ints[1]}
	if !rep.held {
		rep.pttl = time.Duration(ints[2]) * time.Millisecond
		rep.why = ints[3]
		rep.warming = ints[3] == whyWarming
		rep.holder = holder
	}
	return rep, nil
}
