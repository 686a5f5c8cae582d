package redislock

import (
	"context"
	"fmt"

	"github.com/leader-elector/leader-elector/pkg/election"
)

var _ election.Reclaimer = (*Backend)(nil)

// Handle implements election.Reclaimer: the candidacy's member name, 32
// random hex digits that appear in its entry in line and in every lock
// value it acquires. It is random per candidacy, so a live process started
// with the same identity never has the same handle.
func (b *Backend) Handle(cand election.Candidacy) string {
	c, err := b.own(cand)
	if err != nil {
		return ""
	}
	return c.member
}

// Reclaim implements election.Reclaimer: on every node, reclaim.lua
// deletes the lock if that candidacy acquired it (its value names the
// handle) and the candidacy's entry in line, and announces a release so
// waiters try at once. (A switchover's reservation names the identity,
// which the restarted process has: it stays for it.) It deletes nothing
// else; where any of them names another identity it deletes nothing and
// Reclaim fails saying so. Nothing left to delete is success. It fails too
// when fewer than a majority of nodes answered.
func (b *Backend) Reclaim(ctx context.Context, handle string) error {
	if !validMember(handle) {
		return fmt.Errorf("redis: reclaim: handle %q is not a candidacy's name (32 lowercase hex digits)", handle)
	}
	type reply struct {
		refused      string
		lock, others int64
	}
	res := fanOut(ctx, b, func(ctx context.Context, _ int, n Client) (reply, error) {
		r, err := b.scripts.reclaim.Run(ctx, n, []string{b.keys.lock, b.keys.line, b.keys.events},
			handle, b.identity).Slice()
		if err != nil {
			return reply{}, err
		}
		if len(r) != 2 {
			return reply{}, fmt.Errorf("reclaim script returned %v", r)
		}
		if first, _ := r[0].(int64); first < 0 {
			why, _ := r[1].(string)
			return reply{refused: why}, nil
		}
		lock, _ := r[0].(int64)
		entry, _ := r[1].(int64)
		return reply{lock: lock, others: entry}, nil
	})
	answered := 0
	var firstErr error
	var locks, others int64
	for i, r := range res {
		switch {
		case r.err != nil:
			firstErr = keepFirst(firstErr, r.err)
		case r.val.refused != "":
			return fmt.Errorf("redis: reclaim of %s on %s refused: %s, not %q; leaving it",
				handle, b.names[i], r.val.refused, b.identity)
		default:
			answered++
			locks += r.val.lock
			others += r.val.others
		}
	}
	if answered < b.quorum {
		return classify(fmt.Errorf("redis: reclaim of %s answered on %d of %d nodes, need %d: %w",
			handle, answered, len(b.nodes), b.quorum, firstErr))
	}
	b.logger.Info("released an earlier candidacy", "handle", handle, "locks", locks, "entries", others)
	return nil
}
