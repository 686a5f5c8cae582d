package redislock

import (
	"context"
	"fmt"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// A planned switchover on Redis. handoff.lua, on every node, checks that
// the caller holds the lock there and that the successor's candidacy is
// live in that node's line; then it reserves the free lock for the
// successor's identity for one TTL (keys.next: acquire.lua grants it to
// nobody else while the reservation lives, and the successor's commit
// consumes it; a candidacy of the successor that failed and started again
// meanwhile still finds it),
// moves every candidate ahead of the successor in line behind it, deletes
// the lock and announces the release. The successor, woken by the
// announcement, wins within milliseconds, with a token above the leader's
// (acquire.lua proposes one above the counter, which the leader's commit
// raised to its token). A successor that never comes costs at most the
// reservation's TTL; then anyone may take the lock.
//
// With Redlock the handover counts when a majority of masters did it: a
// majority then refuses everybody but the successor. Where it was done on
// no master and the successor was not in line, nothing changed
// (election.ErrNotInLine). Any other result, done on a minority or with
// masters that did not answer, leaves the outcome unknown, as the Handoff
// contract allows: the leader steps down and releases its lock everywhere;
// the successor or another candidate wins next, and the reservations on
// the minority expire after a TTL.

var _ election.Handoff = (*Backend)(nil)

// successor finds the candidacy named to in line behind c, which must
// hold the lock on a majority of nodes. It returns the lock value and the
// successor's member name. Errors wrap election.ErrNotInLine when to
// cannot be chosen, election.ErrLost when c no longer holds the lock.
func (b *Backend) successor(ctx context.Context, c *candidacy, to string) (value, member string, err error) {
	c.mu.Lock()
	value = c.value
	c.mu.Unlock()
	if value == "" {
		return "", "", fmt.Errorf("redis: this candidacy holds no lock: %w", election.ErrNotLeader)
	}
	lines, err := b.readLine(ctx)
	if err != nil {
		return "", "", err
	}
	mine := 0
	for _, l := range lines {
		if l != nil && l.lock == value {
			mine++
		}
	}
	if mine < b.quorum {
		return "", "", fmt.Errorf("redis: lock %s held on %d of %d nodes, need %d: %w",
			b.keys.lock, mine, len(b.nodes), b.quorum, election.ErrLost)
	}
	all := merge(lines, c.member)
	var named []inLine
	for _, e := range all {
		if e.identity == to {
			named = append(named, e)
		}
	}
	switch {
	case len(named) == 0:
		return "", "", fmt.Errorf("%w: no candidate named %q is in line in election %s (%d others are)",
			election.ErrNotInLine, to, b.keys.lock, len(all))
	case len(named) > 1:
		return "", "", fmt.Errorf("%w: %d candidates are named %q in election %s; refusing to choose one",
			election.ErrNotInLine, len(named), to, b.keys.lock)
	case named[0].nodes < b.quorum:
		return "", "", fmt.Errorf("%w: %q is in line on %d of %d masters, need %d",
			election.ErrNotInLine, to, named[0].nodes, len(b.nodes), b.quorum)
	}
	return value, named[0].member, nil
}

// CheckSuccessor implements election.Handoff.
func (b *Backend) CheckSuccessor(ctx context.Context, cand election.Candidacy, to string) error {
	c, err := b.own(cand)
	if err != nil {
		return err
	}
	_, _, err = b.successor(ctx, c, to)
	return err
}

// HandOver implements election.Handoff; see the comment at the top of
// this file for what each result means on Redlock.
func (b *Backend) HandOver(ctx context.Context, cand election.Candidacy, to string) error {
	c, err := b.own(cand)
	if err != nil {
		return err
	}
	value, member, err := b.successor(ctx, c, to)
	if err != nil {
		return err
	}
	res := fanOut(ctx, b, func(ctx context.Context, _ int, n Client) (int64, error) {
		return b.scripts.handoff.Run(ctx, n, []string{b.keys.lock, b.keys.line, b.keys.next, b.keys.events},
			value, member, b.ttl.Milliseconds(), to).Int64()
	})
	var done, notMine, notInLine, failed int
	var firstErr error
	for _, r := range res {
		switch {
		case r.err != nil:
			failed++
			firstErr = keepFirst(firstErr, r.err)
		case r.val == 1:
			done++
		case r.val == 0:
			notMine++
		default:
			notInLine++
		}
	}
	switch {
	case done >= b.quorum:
		// The term is over. Free the nodes where the lock is still ours
		// (the successor was not in line there, or they did not answer):
		// a majority refuses everybody but the successor anyway.
		c.mu.Lock()
		if c.value == value {
			c.value, c.token = "", 0
		}
		c.mu.Unlock()
		if done < len(b.nodes) {
			b.releaseDetached(ctx, value, true)
		}
		b.logger.Info("handed over", "to", to, "nodes", done)
		return nil
	case done == 0 && failed == 0 && notInLine > 0:
		return fmt.Errorf("%w: %q left the line before the handover", election.ErrNotInLine, to)
	case done == 0 && failed == 0:
		return fmt.Errorf("redis: handing over: lock %s no longer held: %w", b.keys.lock, election.ErrLost)
	}
	return classify(fmt.Errorf("redis: handed over to %q on %d of %d nodes, need %d; the outcome is unknown: %w",
		to, done, len(b.nodes), b.quorum, firstErr))
}
