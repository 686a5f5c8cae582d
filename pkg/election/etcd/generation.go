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
// <prefix><election>#generation/<lease in hex>, attached to its lease (so it
// goes with the candidacy). '#' cannot appear in an election name, so no
// election's keys live there, and tools that read the election's prefix
// (etcdctl elect, concurrency.Election) never see these keys.

var _ election.Generations = (*Backend)(nil)

// generationPrefix is where the election's candidates publish generations.
func (b *Backend) generationPrefix() string {
	return strings.TrimSuffix(b.prefix, "/") + "#generation/"
}

// WaitNewer implements election.Generations.
func (b *Backend) WaitNewer(ctx context.Context, cand election.Candidacy, gen int64) error {
	c, ok := cand.(*candidacy)
	if !ok || c.b != b {
		return errors.New("etcd: generations of a candidacy this backend did not create")
	}
	genPrefix := b.generationPrefix()
	rctx, cancel := b.request(ctx)
	_, err := c.cli.Put(rctx, fmt.Sprintf("%s%x", genPrefix, int64(c.lease)), strconv.FormatInt(gen, 10), clientv3.WithLease(c.lease))
	cancel()
	if err != nil {
		return b.failed(ctx, "publishing the generation", err)
	}
	// Both prefixes start with this, so one watch sees every change.
	common := strings.TrimSuffix(b.prefix, "/")
	for {
		rctx, cancel := b.request(ctx)
		resp, err := c.cli.Txn(rctx).Then(
			clientv3.OpGet(b.prefix, clientv3.WithPrefix()),
			clientv3.OpGet(genPrefix, clientv3.WithPrefix()),
		).Commit()
		cancel()
		if err != nil {
			return b.failed(ctx, "reading generations", err)
		}
		if newerBehind(c.key, resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs, gen) {
			return nil
		}
		if err := b.waitChange(ctx, c.cli, common, resp.Header.Revision); err != nil {
			return err
		}
	}
}

// newerBehind reports whether a key in line was created after key and
// belongs to a candidate whose published generation is greater than gen.
func newerBehind(key string, line, gens []*mvccpb.KeyValue, gen int64) bool {
	var mine int64
	for _, kv := range line {
		if string(kv.Key) == key {
			mine = kv.CreateRevision
		}
	}
	if mine == 0 {
		return false // our key is not created yet
	}
	byLease := map[int64]int64{}
	for _, kv := range gens {
		if g, err := strconv.ParseInt(string(kv.Value), 10, 64); err == nil {
			byLease[kv.Lease] = g
		}
	}
	for _, kv := range line {
		if kv.CreateRevision > mine && byLease[kv.Lease] > gen {
			return true
		}
	}
	return false
}

// waitChange returns after the first change under prefix after rev.
func (b *Backend) waitChange(ctx context.Context, cli *clientv3.Client, prefix string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return b.failed(ctx, "watching generations", err)
		}
		if len(wr.Events) > 0 {
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watching generations: watch closed")
}
