package etcd

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// A planned switchover on etcd. The leader deletes, in one transaction
// guarded by its own key's and the successor's create revisions, its own
// key and the key of every candidate queued between them. The successor's
// key is then the oldest, so it wins (its create revision, the next token,
// is greater than the leader's), and nobody else can: every candidate
// whose key was deleted finds it gone when it re-checks its key before
// claiming (Campaign always does) and queues again with a fresh key, behind
// the successor. Their leases are left to expire, as after a resignation.
//
// The transaction holds at most etcd's --max-txn-ops operations (default
// 128), so a successor with more candidates ahead of it is refused.

var _ election.Handoff = (*Backend)(nil)

// maxTxnOps is etcd's default --max-txn-ops.
const maxTxnOps = 128

// handoffPlan is what a handover deletes, read at one revision.
type handoffPlan struct {
	target    string             // the successor's key
	targetRev int64              // its create revision
	ahead     []string           // keys between this leader's and the successor's
	aheadRevs []int64            // their create revisions
	leases    []clientv3.LeaseID // their leases
}

// plan reads the line and finds the successor named to behind c. Errors
// wrap election.ErrNotInLine when to cannot be chosen, election.ErrLost
// when c's key no longer leads.
func (b *Backend) plan(ctx context.Context, cand election.Candidacy, to string) (*candidacy, handoffPlan, error) {
	c, ok := cand.(*candidacy)
	if !ok || c.b != b {
		return nil, handoffPlan{}, errors.New("etcd: handover of a candidacy this backend did not create")
	}
	rev := c.createRev()
	if rev == 0 {
		return nil, handoffPlan{}, fmt.Errorf("etcd: candidate key %s not created: %w", c.key, election.ErrNotLeader)
	}
	var resp *clientv3.GetResponse
	err := b.call(ctx, "reading the candidates in line", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		var err error
		resp, err = cli.Get(ctx, b.prefix, append([]clientv3.OpOption{clientv3.WithPrefix()},
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))...)
		return err
	})
	if err != nil {
		return nil, handoffPlan{}, err
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Key) != c.key || resp.Kvs[0].CreateRevision != rev {
		return nil, handoffPlan{}, fmt.Errorf("etcd: candidate key %s no longer leads: %w", c.key, election.ErrLost)
	}
	var (
		p     handoffPlan
		found int
	)
	for i, kv := range resp.Kvs[1:] {
		if string(kv.Value) != to {
			continue
		}
		found++
		if found == 1 {
			p.target, p.targetRev = string(kv.Key), kv.CreateRevision
			for _, a := range resp.Kvs[1 : i+1] {
				p.ahead = append(p.ahead, string(a.Key))
				p.aheadRevs = append(p.aheadRevs, a.CreateRevision)
				p.leases = append(p.leases, clientv3.LeaseID(a.Lease))
			}
		}
	}
	switch {
	case found == 0:
		return nil, handoffPlan{}, fmt.Errorf("%w: no candidate named %q is in line in election %s (%d others are)",
			election.ErrNotInLine, to, b.prefix, len(resp.Kvs)-1)
	case found > 1:
		return nil, handoffPlan{}, fmt.Errorf("%w: %d candidates are named %q in election %s; refusing to choose one",
			election.ErrNotInLine, found, to, b.prefix)
	case 2*len(p.ahead)+3 > maxTxnOps:
		return nil, handoffPlan{}, fmt.Errorf("%w: %q has %d candidates ahead of it, more than one etcd transaction may remove (%d)",
			election.ErrNotInLine, to, len(p.ahead), (maxTxnOps-3)/2)
	}
	return c, p, nil
}

// CheckSuccessor implements election.Handoff.
func (b *Backend) CheckSuccessor(ctx context.Context, cand election.Candidacy, to string) error {
	_, _, err := b.plan(ctx, cand, to)
	return err
}

// HandOver implements election.Handoff. When the transaction fails because
// a candidate ahead of the successor left meanwhile, it reads the line
// again and retries; it gives up when the successor or this leader's key
// is gone.
func (b *Backend) HandOver(ctx context.Context, cand election.Candidacy, to string) error {
	for attempt := 0; attempt < 3; attempt++ {
		c, p, err := b.plan(ctx, cand, to)
		if err != nil {
			return err
		}
		// The engine stopped claiming before it hands over: the successor
		// need not wait out this candidacy (waitOut), nor those ahead of it,
		// which never led; whichever of their keys the successor watched
		// last, it finds the resigned marker, and if it had not looked for
		// a predecessor yet, the last resignation's record (resignedBefore).
		// Each key ahead must still exist (then so does its lease, which
		// the marker is put on).
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(c.key), "=", c.createRev()),
			clientv3.Compare(clientv3.CreateRevision(p.target), "=", p.targetRev)}
		ops := append([]clientv3.Op{clientv3.OpDelete(c.key)}, b.resignedOps(c.lease, c.lease)...)
		for i, k := range p.ahead {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", p.aheadRevs[i]))
			ops = append(ops, clientv3.OpDelete(k))
			if p.leases[i] != 0 {
				ops = append(ops, clientv3.OpPut(b.resignedKey(p.leases[i]), "", clientv3.WithLease(p.leases[i])))
			}
		}
		var resp *clientv3.TxnResponse
		err = b.call(ctx, "handing over", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
			var err error
			resp, err = cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
			return err
		})
		if err != nil {
			return err
		}
		if resp.Succeeded {
			b.log.Info("handed over", "to", to, "key", p.target, "token", p.targetRev, "requeued", len(p.ahead))
			return nil
		}
	}
	// A transaction that committed but whose answer was lost reads, when
	// resent, as a changed line: if this leader's key is gone, the
	// handover happened (plan says ErrLost), and the engine must not lead
	// again.
	if _, _, err := b.plan(ctx, cand, to); err != nil {
		return err
	}
	return fmt.Errorf("%w: the line kept changing while handing over to %q", election.ErrNotInLine, to)
}
