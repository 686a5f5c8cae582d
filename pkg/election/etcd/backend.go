// Package etcd implements election.Backend on etcd, with the key layout of
// etcd's concurrency.Election: one key per candidate under the election's
// prefix (Options.ElectionPrefix), named by its lease ID in hex, created by
// a txn on create_revision == 0 with the candidate's identity as value. The key with the lowest create revision
// leads, and that revision is the fencing token. `etcdctl elect --listen` and
// concurrency.Election.Leader see the same leader.
//
// It speaks the protocol with plain clientv3 calls rather than through
// concurrency.Session because the engine must know when each lease renewal
// was sent (Session measures from when replies arrive), and because
// Election.Campaign does not re-check its own key after waiting (etcd issue
// #19597). Campaign here re-checks both the key and the lease before it
// reports a win.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Backend is an etcd election backend. Its client connects lazily, so a
// backend can be built while etcd is down.
type Backend struct {
	opts     Options
	prefix   string // <Prefix><election>/
	identity string
	ttl      int64 // seconds
	log      *slog.Logger

	mu     sync.Mutex
	client *clientv3.Client
}

// Limits of etcd leases.
const (
	// MinTTL is the shortest lease etcd grants with its default Raft
	// timings; shorter requests are silently raised.
	MinTTL = 2 * time.Second
	// MaxTTL is etcd's maximum lease TTL (lease.MaxLeaseTTL, 9,000,000,000 s).
	MaxTTL = 9_000_000_000 * time.Second
)

// ValidateTTL checks a TTL against etcd's lease limits: at least MinTTL, at
// most MaxTTL, whole seconds (the lease API counts seconds).
func ValidateTTL(ttl time.Duration) error {
	switch {
	case ttl < MinTTL:
		return election.Invalid("TTL", "%v is below etcd's minimum lease of %v", ttl, MinTTL)
	case ttl > MaxTTL:
		return election.Invalid("TTL", "%v is above etcd's maximum lease of %v", ttl, MaxTTL)
	case ttl%time.Second != 0:
		return election.Invalid("TTL", "%v: etcd leases are whole seconds", ttl)
	}
	return nil
}

// New returns a backend for the candidate p. It validates opts and p
// against etcd's limits (errors are *election.ConfigError) and does not
// contact etcd.
func New(opts Options, p election.Params, log *slog.Logger) (*Backend, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := ValidateTTL(p.TTL); err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{
		opts:     opts,
		prefix:   opts.ElectionPrefix(p.Election),
		identity: p.Identity,
		ttl:      int64(p.TTL / time.Second),
		log:      log,
	}, nil
}

// Name implements election.Backend.
func (b *Backend) Name() string { return "etcd" }

// Prefix is the key prefix of the election, as etcdctl would be given it.
func (b *Backend) Prefix() string { return b.prefix }

// connect returns the client, creating it on first use. With auth enabled,
// creating it fetches a token, which fails while etcd is down; the caller
// retries.
func (b *Backend) connect() (*clientv3.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		return b.client, nil
	}
	tlsCfg, err := b.opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            b.opts.Endpoints,
		DialTimeout:          b.opts.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: b.opts.DialTimeout,
		TLS:                  tlsCfg,
		Username:             b.opts.Username,
		Password:             b.opts.Password,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, b.failed(context.Background(), "connecting to etcd", err)
	}
	b.client = c
	return c, nil
}

// Close implements election.Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client == nil {
		return nil
	}
	err := b.client.Close()
	b.client = nil
	return err
}

// request bounds one request by the dial timeout.
func (b *Backend) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.DialTimeout)
}

// Candidate grants a fresh lease.
func (b *Backend) Candidate(ctx context.Context) (election.Candidacy, election.Validity, error) {
	cli, err := b.connect()
	if err != nil {
		return nil, election.Validity{}, err
	}
	if err := b.reachable(ctx, cli); err != nil {
		return nil, election.Validity{}, err
	}
	rctx, cancel := b.request(ctx)
	defer cancel()
	sent := time.Now()
	resp, err := cli.Grant(rctx, b.ttl)
	if err != nil {
		return nil, election.Validity{}, b.failed(ctx, "granting a lease", err)
	}
	c := &candidacy{
		b:     b,
		cli:   cli,
		lease: resp.ID,
		key:   fmt.Sprintf("%s%x", b.prefix, resp.ID),
	}
	return c, election.Validity{Sent: sent, TTL: time.Duration(resp.TTL) * time.Second}, nil
}

// candidacy is one lease and the key attached to it.
type candidacy struct {
	b     *Backend
	cli   *clientv3.Client
	lease clientv3.LeaseID
	key   string

	mu  sync.Mutex
	rev int64 // create revision of key; 0 until Campaign created it
}

func (c *candidacy) createRev() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// Campaign creates the candidate's key, waits until no key created before it
// remains, then re-checks key and lease.
func (c *candidacy) Campaign(ctx context.Context) (election.Term, error) {
	rev, err := c.create(ctx)
	if err != nil {
		return election.Term{}, err
	}
	vacant, pred, err := c.waitPredecessors(ctx, rev)
	if err != nil {
		return election.Term{}, err
	}
	// Learn how the predecessor went while re-checking our own key, so the
	// takeover waits for neither.
	kind := make(chan string, 1)
	if vacant.IsZero() {
		kind <- ""
	} else {
		go func() { kind <- c.b.howItWent(ctx, c.cli, pred) }()
	}
	v, err := c.verify(ctx, rev)
	k := <-kind
	if err != nil {
		return election.Term{}, err
	}
	return election.Term{Token: rev, Validity: v, Vacant: vacant, Kind: k}, nil
}

// howItWent tells a resignation from an expiry by the predecessor's lease:
// a resigning candidate deletes only its key, so its lease lives on, while
// an expired lease takes the key with it.
func (b *Backend) howItWent(ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID) string {
	rctx, cancel := b.request(ctx)
	defer cancel()
	resp, err := cli.TimeToLive(rctx, lease)
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
		return election.Failover
	case err != nil:
		return ""
	}
	return election.Handover
}

// create puts the key if absent and returns its create revision.
func (c *candidacy) create(ctx context.Context) (int64, error) {
	rctx, cancel := c.b.request(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0)).
		Then(clientv3.OpPut(c.key, c.b.identity, clientv3.WithLease(c.lease))).
		Else(clientv3.OpGet(c.key)).
		Commit()
	if err != nil {
		return 0, c.b.failed(ctx, "creating the candidate key", err)
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		rev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	c.mu.Lock()
	c.rev = rev
	c.mu.Unlock()
	return rev, nil
}

// waitPredecessors blocks until no key under the prefix has a create
// revision below rev. It returns when the last predecessor was seen to go
// (zero if there was none) and that predecessor's lease.
func (c *candidacy) waitPredecessors(ctx context.Context, rev int64) (time.Time, clientv3.LeaseID, error) {
	var (
		vacant time.Time
		lease  clientv3.LeaseID
	)
	for {
		rctx, cancel := c.b.request(ctx)
		resp, err := c.cli.Get(rctx, c.b.prefix,
			append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithMaxCreateRev(rev - 1)},
				clientv3.WithLastCreate()...)...)
		cancel()
		if err != nil {
			return time.Time{}, 0, c.b.failed(ctx, "finding the predecessor", err)
		}
		if len(resp.Kvs) == 0 {
			return vacant, lease, nil
		}
		pred := string(resp.Kvs[0].Key)
		if err := c.waitDeleted(ctx, pred, resp.Header.Revision); err != nil {
			return time.Time{}, 0, err
		}
		vacant, lease = time.Now(), clientv3.LeaseID(resp.Kvs[0].Lease)
	}
}

// waitDeleted watches key from just after rev until it is deleted.
func (c *candidacy) waitDeleted(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range c.cli.Watch(wctx, key, clientv3.WithRev(rev+1), clientv3.WithFilterPut()) {
		if err := wr.Err(); err != nil {
			return c.b.failed(ctx, "watching the predecessor", err)
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watching the predecessor: watch closed")
}

// verify confirms that the candidate's key still exists with the revision
// it was created at, and that its lease has time left; the lease check's
// send time and remaining TTL prove liveness from this point on.
func (c *candidacy) verify(ctx context.Context, rev int64) (election.Validity, error) {
	if err := c.checkKey(ctx, rev); err != nil {
		return election.Validity{}, err
	}
	rctx, cancel := c.b.request(ctx)
	defer cancel()
	sent := time.Now()
	resp, err := c.cli.TimeToLive(rctx, c.lease)
	if err != nil {
		return election.Validity{}, c.b.failed(ctx, "checking the lease", err)
	}
	if resp.TTL <= 0 {
		return election.Validity{}, fmt.Errorf("lease %x expired: %w", c.lease, election.ErrLost)
	}
	return election.Validity{Sent: sent, TTL: time.Duration(resp.TTL) * time.Second}, nil
}

func (c *candidacy) checkKey(ctx context.Context, rev int64) error {
	rctx, cancel := c.b.request(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.CreateRevision(c.key), "=", rev)).
		Commit()
	if err != nil {
		return c.b.failed(ctx, "checking the candidate key", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("candidate key %s is gone: %w", c.key, election.ErrLost)
	}
	return nil
}

// Renew checks that the key (once created) is still ours, then refreshes
// the lease once.
func (c *candidacy) Renew(ctx context.Context) (election.Validity, error) {
	if rev := c.createRev(); rev != 0 {
		if err := c.checkKey(ctx, rev); err != nil {
			return election.Validity{}, err
		}
	}
	sent := time.Now()
	resp, err := c.cli.KeepAliveOnce(ctx, c.lease)
	if err != nil {
		return election.Validity{}, c.b.failed(ctx, "renewing the lease", err)
	}
	return election.Validity{Sent: sent, TTL: time.Duration(resp.TTL) * time.Second}, nil
}

// Resign deletes the candidate's key, so the successor's watch fires at
// once. The lease is left to expire: its being alive tells the successor
// this was a handover, not a crash. A candidacy that never created its key
// revokes its lease instead.
func (c *candidacy) Resign(ctx context.Context) error {
	if rev := c.createRev(); rev != 0 {
		_, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(c.key), "=", rev)).
			Then(clientv3.OpDelete(c.key)).
			Commit()
		if err != nil {
			return c.b.failed(ctx, "deleting the candidate key", err)
		}
		return nil
	}
	_, err := c.cli.Revoke(ctx, c.lease)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return c.b.failed(ctx, "revoking the lease", err)
	}
	return nil
}

// Observe reports the leader (the key with the lowest create revision) at
// start and after every change under the prefix.
func (b *Backend) Observe(ctx context.Context, fn func(election.Leader)) error {
	cli, err := b.connect()
	if err != nil {
		return err
	}
	if err := b.reachable(ctx, cli); err != nil {
		return err
	}
	rev, err := b.reportLeader(ctx, cli, fn)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Watch(wctx, b.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return b.failed(ctx, "watching the election", err)
		}
		if len(wr.Events) == 0 {
			continue
		}
		if _, err := b.reportLeader(ctx, cli, fn); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watching the election: watch closed")
}

// reportLeader reads the current leader, passes it to fn and returns the
// revision it was read at.
func (b *Backend) reportLeader(ctx context.Context, cli *clientv3.Client, fn func(election.Leader)) (int64, error) {
	rctx, cancel := b.request(ctx)
	defer cancel()
	resp, err := cli.Get(rctx, b.prefix, append([]clientv3.OpOption{clientv3.WithPrefix()}, clientv3.WithFirstCreate()...)...)
	if err != nil {
		return 0, b.failed(ctx, "reading the leader", err)
	}
	var l election.Leader
	if len(resp.Kvs) > 0 {
		l = election.Leader{ID: string(resp.Kvs[0].Value), Token: resp.Kvs[0].CreateRevision}
	}
	fn(l)
	return resp.Header.Revision, nil
}
