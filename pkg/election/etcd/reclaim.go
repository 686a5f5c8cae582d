package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leader-elector/leader-elector/pkg/election"
)

var _ election.Reclaimer = (*Backend)(nil)

// Handle implements election.Reclaimer: the candidacy's lease ID in hex,
// which is also the last element of its key.
func (b *Backend) Handle(cand election.Candidacy) string {
	c, ok := cand.(*candidacy)
	if !ok || c.b != b {
		return ""
	}
	return fmt.Sprintf("%x", int64(c.lease))
}

// Reclaim implements election.Reclaimer: it revokes the lease named by
// handle, which deletes its key, so the next candidate's watch fires at
// once. It revokes only a lease whose attached keys are at most this
// election's key for that lease, holding this identity: a lease that now
// carries anything else is refused. A lease that is gone is success.
func (b *Backend) Reclaim(ctx context.Context, handle string) error {
	id, err := strconv.ParseInt(handle, 16, 64)
	if err != nil || id <= 0 {
		return fmt.Errorf("etcd: reclaim: handle %q is not a lease ID", handle)
	}
	lease := clientv3.LeaseID(id)
	cli, err := b.connect()
	if err != nil {
		return err
	}
	key := fmt.Sprintf("%s%x", b.prefix, id)
	rctx, cancel := b.request(ctx)
	defer cancel()
	ttl, err := cli.TimeToLive(rctx, lease, clientv3.WithAttachedKeys())
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return nil
	case err != nil:
		return b.failed(ctx, "reading the earlier lease", err)
	case ttl.TTL <= 0:
		return nil
	}
	for _, k := range ttl.Keys {
		if string(k) != key {
			return fmt.Errorf("etcd: reclaim: lease %x carries key %q, not only this candidate's %s; leaving it", id, k, key)
		}
	}
	if len(ttl.Keys) > 0 {
		resp, err := cli.Get(rctx, key)
		if err != nil {
			return b.failed(ctx, "reading the earlier key", err)
		}
		if len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) != b.identity {
			return fmt.Errorf("etcd: reclaim: key %s holds identity %q, not %q; leaving it", key, resp.Kvs[0].Value, b.identity)
		}
	}
	if _, err := cli.Revoke(rctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return b.failed(ctx, "revoking the earlier lease", err)
	}
	return nil
}
