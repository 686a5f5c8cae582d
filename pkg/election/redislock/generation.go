package redislock

import (
	"context"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Generations on Redis: each waiting candidacy's entry in line carries its
// generation (WaitNewer publishes it, every acquisition attempt refreshes
// it). acquire.lua refuses the free lock to a candidacy while a live
// candidacy of a greater generation is in line on that node (unless a
// handover reserved the lock for the former), so once a newer-generation
// candidate waits, only the newest generation can win; WaitNewer returns
// when such a candidate is in line behind this one, so that the engine
// queues again behind it, and NewerSuccessor names the first of the newest
// generation for the leader's handover at shutdown. A crashed newer
// candidate holds the older ones back until its entry expires (one TTL) or
// its restarted process reclaims it. A candidate without a generation (0)
// counts as older than any with one.

var _ election.Generations = (*Backend)(nil)

// WaitNewer implements election.Generations. It reads the line every poll
// interval (TTL/4, at most 1s): nothing is announced when a candidate joins,
// and a newer one is kept ahead by acquire.lua at once anyway.
func (b *Backend) WaitNewer(ctx context.Context, cand election.Candidacy, gen int64, queued func()) error {
	c, err := b.own(cand)
	if err != nil {
		return err
	}
	c.gen.Store(gen)
	if err := b.register(ctx, c); err != nil {
		return err
	}
	queued()
	for {
		lines, err := b.readLine(ctx)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if l != nil && newerBehind(l, c.member, gen) {
				return nil
			}
		}
		if err := waitFor(ctx, b.poll, nil); err != nil {
			return err
		}
	}
}

// register puts c in line with its generation now, on a majority of the
// nodes, unless it leads (a leader is not in line).
func (b *Backend) register(ctx context.Context, c *candidacy) error {
	c.mu.Lock()
	leading := c.value != ""
	c.mu.Unlock()
	if leading {
		return nil
	}
	res := fanOut(ctx, b, func(ctx context.Context, i int, n Client) (struct{}, error) {
		if err := b.ensureChecked(ctx, i, n); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, b.scripts.acquire.Run(ctx, n, c.acquireKeys(), "", b.ttl.Milliseconds(), 0,
			c.member, c.gen.Load(), b.identity, "1").Err()
	})
	answered := 0
	var firstErr error
	for _, r := range res {
		if r.err != nil {
			firstErr = keepFirst(firstErr, r.err)
			continue
		}
		answered++
	}
	if answered < b.quorum {
		return classify(firstErr)
	}
	return nil
}

// newerBehind reports whether l lists member and, after it, a live
// candidacy of a generation above gen.
func newerBehind(l *nodeLine, member string, gen int64) bool {
	seen := false
	for _, e := range l.entries {
		switch {
		case e.member == member:
			seen = true
		case seen && e.gen > gen:
			return true
		}
	}
	return false
}

// NewerSuccessor implements election.Generations: of the candidacies in
// line on a majority of nodes, other than this identity's, the first with
// the greatest generation above gen.
func (b *Backend) NewerSuccessor(ctx context.Context, cand election.Candidacy, gen int64) (string, error) {
	c, err := b.own(cand)
	if err != nil {
		return "", err
	}
	lines, err := b.readLine(ctx)
	if err != nil {
		return "", err
	}
	best, id := gen, ""
	for _, e := range merge(lines, c.member) {
		if e.nodes >= b.quorum && e.identity != b.identity && e.gen > best {
			best, id = e.gen, e.identity
		}
	}
	return id, nil
}
