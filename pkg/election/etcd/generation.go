package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Generations on etcd: each candidate puts its generation under
// <election prefix>#generation/<lease in hex>, attached to its lease (so it
// goes with the candidacy). '#' cannot appear in an election name, so no
// election's keys live there, and tools that read the election's prefix
// (etcdctl elect, concurrency.Election) never see these keys.

var _ election.Generations = (*Backend)(nil)

// generationPrefix is where the election's candidates publish generations.
func (b *Backend) generationPrefix() string {
	return strings.TrimSuffix(b.prefix, "/") + "#generation/"
}

// WaitNewer implements election.Generations.
func (b *Backend) WaitNewer(ctx context.Context, cand election.Candidacy, gen int64, queued func()) error {
	c, err := b.ownCandidacy(cand)
	if err != nil {
		return err
	}
	err = b.call(ctx, "publishing the generation", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		_, err := cli.Put(ctx, fmt.Sprintf("%s%x", b.generationPrefix(), int64(c.lease)), strconv.FormatInt(gen, 10), clientv3.WithLease(c.lease))
		return err
	})
	if err != nil {
		return err
	}
	// Both prefixes start with this, so one watch sees every change.
	common := strings.TrimSuffix(b.prefix, "/")
	told := false
	for {
		l, err := b.readLine(ctx, c)
		if err != nil {
			return err
		}
		if l.mine != 0 && !told {
			told = true
			queued()
		}
		if l.mine != 0 {
			for _, kv := range l.kvs {
				if kv.CreateRevision > l.mine && l.gens[kv.Lease] > gen {
					return nil
				}
			}
		}
		if err := b.waitChange(ctx, common, l.rev); err != nil {
			return err
		}
	}
}

// NewerSuccessor implements election.Generations.
func (b *Backend) NewerSuccessor(ctx context.Context, cand election.Candidacy, gen int64) (string, error) {
	c, err := b.ownCandidacy(cand)
	if err != nil {
		return "", err
	}
	l, err := b.readLine(ctx, c)
	if err != nil || l.mine == 0 {
		return "", err
	}
	best, id := gen, ""
	for _, kv := range l.kvs { // in line order
		if g := l.gens[kv.Lease]; kv.CreateRevision > l.mine && g > best {
			best, id = g, string(kv.Value)
		}
	}
	return id, nil
}

func (b *Backend) ownCandidacy(cand election.Candidacy) (*candidacy, error) {
	c, ok := cand.(*candidacy)
	if !ok || c.b != b {
		return nil, errors.New("etcd: generations of a candidacy this backend did not create")
	}
	return c, nil
}

// line is the election's line and generations, read at one revision.
type line struct {
	kvs  []*mvccpb.KeyValue // in line order (create revision)
	gens map[int64]int64    // lease → published generation
	mine int64              // create revision of c's key; 0 if not (yet) in line
	rev  int64
}

func (b *Backend) readLine(ctx context.Context, c *candidacy) (line, error) {
	var resp *clientv3.TxnResponse
	err := b.call(ctx, "reading generations", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		var err error
		resp, err = cli.Txn(ctx).Then(
			clientv3.OpGet(b.prefix, append([]clientv3.OpOption{clientv3.WithPrefix()},
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))...),
			clientv3.OpGet(b.generationPrefix(), clientv3.WithPrefix()),
		).Commit()
		return err
	})
	if err != nil {
		return line{}, err
	}
	l := line{kvs: resp.Responses[0].GetResponseRange().Kvs, gens: map[int64]int64{}, rev: resp.Header.Revision}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if g, err := strconv.ParseInt(string(kv.Value), 10, 64); err == nil {
			l.gens[kv.Lease] = g
		}
	}
	for _, kv := range l.kvs {
		if string(kv.Key) == c.key {
			l.mine = kv.CreateRevision
		}
	}
	return l, nil
}

// waitChange returns after the first change under prefix after rev. It
// watches on one member, checking every request timeout that the member
// still answers, and moves to another when it does not (see watchLoop).
func (b *Backend) waitChange(ctx context.Context, prefix string, rev int64) error {
	answers := func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err
	}
	return b.watchLoop(ctx, "watching generations", func(ctx context.Context, _ int, cli *clientv3.Client) (bool, int64, error) {
		// Watch from rev, not from this read: no change since rev is missed.
		return false, rev, answers(ctx, cli)
	}, func(ctx context.Context, i int, cli *clientv3.Client, rev int64) error {
		return b.follow(ctx, i, cli, prefix, rev, []clientv3.OpOption{clientv3.WithPrefix()},
			func(ctx context.Context) (bool, error) { return false, answers(ctx, cli) },
			func(context.Context, []*clientv3.Event) (bool, error) { return true, nil })
	})
}
