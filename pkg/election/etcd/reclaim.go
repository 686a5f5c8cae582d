package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

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

// Reclaim implements election.Reclaimer: it deletes the keys of the lease
// named by handle, so the next candidate's watch fires at once. It touches
// only a lease whose attached keys are at most this election's key for that
// lease, holding this identity, that lease's generation key (generation.go;
// a candidate with --generation puts it on the same lease) and its cleared
// key: a lease that now carries anything else is refused. A lease that is
// gone is success.
//
// The reclaimed process is known to be dead (election.Reclaimer). If its
// candidacy had got past its own wait (the cleared key is there), nobody
// from before it can still claim either, so Reclaim leaves the resigned
// marker, on a lease of its own, and the successor takes over at once;
// otherwise the successor waits out whoever came before (waitOut). The
// reclaimed lease, with nothing attached, is left to expire.
func (b *Backend) Reclaim(ctx context.Context, handle string) error {
	id, err := strconv.ParseInt(handle, 16, 64)
	if err != nil || id <= 0 {
		return fmt.Errorf("etcd: reclaim: handle %q is not a lease ID", handle)
	}
	lease := clientv3.LeaseID(id)
	key := fmt.Sprintf("%s%x", b.prefix, id)
	genKey := fmt.Sprintf("%s%x", b.generationPrefix(), id)
	clearedKey := b.clearedKey(lease)
	// Markers a clean exit or a switchover left on the lease: nothing to
	// release then, and no reason to refuse.
	markers := []string{b.resignedKey(lease), b.lastResignedKey()}
	var ttl *clientv3.LeaseTimeToLiveResponse
	err = b.call(ctx, "reading the earlier lease", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		var err error
		ttl, err = cli.TimeToLive(ctx, lease, clientv3.WithAttachedKeys())
		return err
	})
	// TimeToLive rounds the remaining time down to whole seconds: 0 is a
	// lease that lives on for up to a second; a lease that is gone reads -1.
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return nil
	case err != nil:
		return err
	case ttl.TTL < 0:
		return nil
	}
	for _, k := range ttl.Keys {
		if slices.Contains(markers, string(k)) {
			continue
		}
		if string(k) != key && string(k) != genKey && string(k) != clearedKey {
			return fmt.Errorf("etcd: reclaim: lease %x carries key %q, not only this candidate's %s; leaving it", id, k, key)
		}
	}
	if slices.ContainsFunc(ttl.Keys, func(k []byte) bool { return string(k) == key }) {
		var resp *clientv3.GetResponse
		err := b.call(ctx, "reading the earlier key", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
			var err error
			resp, err = cli.Get(ctx, key)
			return err
		})
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) != b.identity {
			return fmt.Errorf("etcd: reclaim: key %s holds identity %q, not %q; leaving it", key, resp.Kvs[0].Value, b.identity)
		}
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, k := range ttl.Keys {
		if slices.Contains(markers, string(k)) {
			continue
		}
		cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(string(k)), "=", lease))
		ops = append(ops, clientv3.OpDelete(string(k)))
	}
	if len(ops) == 0 {
		return nil
	}
	if slices.ContainsFunc(ttl.Keys, func(k []byte) bool { return string(k) == clearedKey }) {
		var marker *clientv3.LeaseGrantResponse
		err := b.call(ctx, "granting the resigned marker's lease", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
			var err error
			marker, err = cli.Grant(ctx, int64(b.ttl/time.Second))
			return err
		})
		if err != nil {
			return err
		}
		ops = append(ops, b.resignedOps(lease, marker.ID)...)
	}
	// If a key is no longer on the lease, the lease expired in between
	// (keys named after it are put only with it): nothing is left to do.
	return b.call(ctx, "deleting the earlier keys", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		_, err := cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		return err
	})
}
