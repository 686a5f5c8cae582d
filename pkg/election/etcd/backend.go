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
//
// Each member is reached through a client of its own, every request is
// bounded by TTL/6, and watches re-read their key every TTL/6, so that a
// member that hangs (its connections open, nothing answered) is passed
// over within the lease rather than after gRPC's keepalive, which cannot
// ping more often than every 10 s: see members.go. With the Raft leader
// hung or killed, the election has a leader again within 2 × TTL + 1 s when
// the leader keeps its term or resigns, 3 × TTL + 1 s when a successor
// must wait it out (waitOut).
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/internal/retry"
)

// Backend is an etcd election backend. It talks to each member through a
// client of its own, created on first use, so a backend can be built while
// etcd is down; see members.go for how it passes over a member that hangs.
type Backend struct {
	opts     Options
	prefix   string // <Prefix><election>/
	identity string
	ttl      time.Duration
	// maxTTL is the largest lease TTL (ns) seen on a predecessor (waitOut).
	maxTTL atomic.Int64
	// requestTimeout bounds each request and each watch probe: TTL/6.
	requestTimeout time.Duration
	log            *slog.Logger
	pool           *pool
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
		opts:           opts,
		prefix:         opts.ElectionPrefix(p.Election),
		identity:       p.Identity,
		ttl:            p.TTL,
		requestTimeout: p.TTL / requestShare,
		log:            log,
		pool:           newPool(opts.Endpoints),
	}, nil
}

// Name implements election.Backend.
func (b *Backend) Name() string { return "etcd" }

// Prefix is the key prefix of the election, as etcdctl would be given it.
func (b *Backend) Prefix() string { return b.prefix }

// Close implements election.Backend.
func (b *Backend) Close() error { return b.pool.close() }

// Candidate grants a fresh lease.
func (b *Backend) Candidate(ctx context.Context) (election.Candidacy, election.Validity, error) {
	var (
		resp *clientv3.LeaseGrantResponse
		sent time.Time
	)
	err := b.call(ctx, "granting a lease", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		sent = time.Now()
		var err error
		resp, err = cli.Grant(ctx, int64(b.ttl/time.Second))
		return err
	})
	if err != nil {
		return nil, election.Validity{}, err
	}
	c := &candidacy{
		b:     b,
		lease: resp.ID,
		key:   fmt.Sprintf("%s%x", b.prefix, resp.ID),
	}
	return c, election.Validity{Sent: sent, TTL: time.Duration(resp.TTL) * time.Second}, nil
}

// candidacy is one lease and the key attached to it.
type candidacy struct {
	b     *Backend
	lease clientv3.LeaseID
	key   string

	mu  sync.Mutex
	rev int64 // create revision of key; 0 until Campaign created it
	// cleared: Campaign got past its predecessors and any wait for them;
	// every earlier claimant had stopped (see waitOut). A resignation then
	// leaves the resigned marker.
	cleared bool
}

func (c *candidacy) createRev() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// Campaign creates the candidate's key, waits until no key created before it
// remains, then re-checks key and lease. Unless the last predecessor left
// the resigned marker (a handover), it first waits out whoever may still
// claim on its own clock (waitOut). The re-check that follows a handover or
// the wait also puts the cleared key (Reclaim reads it), in the same
// transaction: a handover costs no extra round trip.
func (c *candidacy) Campaign(ctx context.Context) (election.Term, error) {
	rev, err := c.create(ctx)
	if err != nil {
		return election.Term{}, err
	}
	vacant, clear, pred, err := c.waitPredecessors(ctx, rev)
	if err != nil {
		return election.Term{}, err
	}
	cleared := clientv3.OpPut(c.b.clearedKey(c.lease), "", clientv3.WithLease(c.lease))
	var (
		v        election.Validity
		handover bool
		k        string
	)
	switch {
	case !vacant.IsZero() && pred.lease != 0:
		// The last predecessor's resigned marker, read in the re-check's
		// transaction: there, this candidacy is cleared at once. (A
		// predecessor without a lease, a key put by hand, has none.)
		marker := clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Version(c.b.resignedKey(pred.lease)), ">", 0)},
			[]clientv3.Op{cleared}, nil)
		var resp *clientv3.TxnResponse
		if v, resp, err = c.verify(ctx, rev, marker); err != nil {
			return election.Term{}, err
		}
		handover = resp.Responses[0].GetResponseTxn().GetSucceeded()
	case vacant.IsZero():
		// Nobody was ahead when it looked: perhaps a resignation (or
		// switchover, or reclaim) had already taken them all.
		if handover = c.resignedBefore(ctx, rev); handover {
			if v, _, err = c.verify(ctx, rev, cleared); err != nil {
				return election.Term{}, err
			}
		}
	}
	if !vacant.IsZero() {
		k = election.Failover
		if handover {
			k = election.Handover
		}
	}
	if !handover {
		from := vacant
		if from.IsZero() {
			from = clear
		}
		if err := c.b.waitOut(ctx, from, pred); err != nil {
			return election.Term{}, err
		}
		if v, _, err = c.verify(ctx, rev, cleared); err != nil {
			return election.Term{}, err
		}
	}
	c.mu.Lock()
	c.cleared = true
	c.mu.Unlock()
	return election.Term{Token: rev, Validity: v, Vacant: vacant, Kind: k}, nil
}

// predecessor is the key a candidate waited on.
type predecessor struct {
	key   string
	lease clientv3.LeaseID
	// ttl is the lease's granted TTL, read while it lived; zero if it could
	// not be read.
	ttl time.Duration
}

// waitOut returns once nobody can still claim leadership from before from,
// the instant this candidate saw its last predecessor go (or, with none,
// first saw the election without one), on its own clock: the largest lease
// TTL seen (pred's, this backend's, any predecessor's before) plus 2 %.
//
// A lease normally ends only after its holder stopped claiming (the holder
// gives up TTL × (1 − drift) − margin after sending its last acknowledged
// renewal; etcd revokes no earlier than TTL after receiving it), so taking
// over at once would be safe. But etcd can revoke leases early: a Raft
// leader paused as a whole process (SIGSTOP, a frozen VM) that resumes
// after it was deposed revokes every lease its stale lessor thinks expired,
// and the new Raft leader commits that although the holders renewed them
// there. etcd 3.7.3 guards this with ensureLeadership (the fix for etcd
// issue #15247) but skips the check while the member's Raft ticks look
// recent, which they do at once after the resume (reproduced:
// docs/safety.md). It takes every candidate's key at once, so the next
// candidate may find no predecessor at all. The holder's last acknowledged
// renewal was sent before the revocation, so its claim ends within one TTL
// of it, measured on its clock; the 2 % covers a clock-rate difference of
// up to 1 % on either side (election.DefaultDrift). A key deleted by hand
// looks the same. Only a predecessor that left the resigned marker (a
// resignation, switchover or reclaim, made after it stopped claiming) is
// not waited out; a new election's first leader waits one TTL.
func (b *Backend) waitOut(ctx context.Context, from time.Time, pred predecessor) error {
	ttl := max(pred.ttl, b.ttl, time.Duration(b.maxTTL.Load()))
	d := time.Until(from.Add(ttl + ttl/50))
	if d <= 0 {
		return nil
	}
	if pred.key != "" {
		b.log.Info("the predecessor's term ended without a resignation; waiting out its validity before claiming",
			"predecessor", pred.key, "wait", d.Round(time.Millisecond))
	} else {
		b.log.Info("no candidate is ahead of this one; waiting out any leader whose lease may have ended early before claiming",
			"wait", d.Round(time.Millisecond))
	}
	return retry.Sleep(ctx, d)
}

// grantedTTL reads the TTL lease was granted with, and keeps the largest
// seen (Backend.maxTTL); zero if it cannot be read (gone, or no member
// answered).
func (b *Backend) grantedTTL(ctx context.Context, lease clientv3.LeaseID) time.Duration {
	var ttl time.Duration
	_ = b.call(ctx, "reading the predecessor's lease", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		resp, err := cli.TimeToLive(ctx, lease)
		if err == nil {
			ttl = time.Duration(resp.GrantedTTL) * time.Second
		}
		return err
	})
	for {
		seen := b.maxTTL.Load()
		if int64(ttl) <= seen || b.maxTTL.CompareAndSwap(seen, int64(ttl)) {
			return ttl
		}
	}
}

// resignedKey is the resigned marker of the candidacy on lease: written in
// the transaction that deletes its key by a resignation, switchover or
// reclaim made after the candidacy stopped claiming (or died), and attached
// to a lease, so it goes within a TTL. It lies outside the election's
// prefix, like the generation keys, so observers never see it.
func (b *Backend) resignedKey(lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s#resigned/%x", strings.TrimSuffix(b.prefix, "/"), int64(lease))
}

// lastResignedKey is rewritten with every resigned marker, in the same
// transaction: a candidate that finds nobody ahead of it reads, at that
// write's revision, whether anybody was ahead of it then (resignedBefore).
func (b *Backend) lastResignedKey() string {
	return strings.TrimSuffix(b.prefix, "/") + "#resigned-last"
}

// resignedOps are the writes that go with deleting the key of a candidacy
// on lease that has stopped claiming: its resigned marker, and the last
// resignation's record, both on markerLease.
func (b *Backend) resignedOps(lease, markerLease clientv3.LeaseID) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpPut(b.resignedKey(lease), "", clientv3.WithLease(markerLease)),
		clientv3.OpPut(b.lastResignedKey(), "", clientv3.WithLease(markerLease)),
	}
}

// resignedBefore reports whether this candidacy, whose key was created at
// rev and which found nobody ahead of it, was left alone by a resignation:
// the last resignation's record was written after rev, and at that
// revision no key created before rev remained. Keys created later are
// behind it, so from then on nobody ahead of it could claim. Any error
// (the record gone with its lease, the revision compacted) says no: the
// candidate then waits.
func (c *candidacy) resignedBefore(ctx context.Context, rev int64) bool {
	var ok bool
	_ = c.b.call(ctx, "reading the last resignation", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		last, err := cli.Get(ctx, c.b.lastResignedKey())
		if err != nil || len(last.Kvs) == 0 || last.Kvs[0].ModRevision <= rev {
			return err
		}
		// Keys, not a count: etcd counts before the create-revision filter.
		ahead, err := cli.Get(ctx, c.b.prefix, clientv3.WithPrefix(), clientv3.WithMaxCreateRev(rev-1),
			clientv3.WithRev(last.Kvs[0].ModRevision), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		ok = len(ahead.Kvs) == 0
		return nil
	})
	return ok
}

// clearedKey says that the candidacy on lease got past its predecessors and
// any wait for them (candidacy.cleared): put on its lease by the re-check
// that ends its campaign, so a restarted process that reclaims it knows it
// may leave the resigned marker.
func (b *Backend) clearedKey(lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s#cleared/%x", strings.TrimSuffix(b.prefix, "/"), int64(lease))
}

// create puts the key if absent and returns its create revision. Sent
// again to another member after no answer, it finds the key it created.
func (c *candidacy) create(ctx context.Context) (int64, error) {
	var rev int64
	err := c.b.call(ctx, "creating the candidate key", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		// Not over a resigned marker: a switchover deleted this key (a
		// resend after a lost answer would otherwise bring it back, under a
		// marker that would spare its successor the wait).
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0),
				clientv3.Compare(clientv3.Version(c.b.resignedKey(c.lease)), "=", 0)).
			Then(clientv3.OpPut(c.key, c.b.identity, clientv3.WithLease(c.lease))).
			Else(clientv3.OpGet(c.key)).
			Commit()
		if err != nil {
			return err
		}
		rev = resp.Header.Revision
		if !resp.Succeeded {
			kvs := resp.Responses[0].GetResponseRange().Kvs
			if len(kvs) == 0 {
				return fmt.Errorf("candidate key %s vanished while being created: %w", c.key, election.ErrLost)
			}
			rev = kvs[0].CreateRevision
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.rev = rev
	c.mu.Unlock()
	return rev, nil
}

// waitPredecessors blocks until no key under the prefix has a create
// revision below rev. It returns when the last predecessor was seen to go
// (zero if there was none), when the read that found none answered, and
// that predecessor.
func (c *candidacy) waitPredecessors(ctx context.Context, rev int64) (vacant, clear time.Time, last predecessor, err error) {
	for {
		var pred *mvccpb.KeyValue
		err := c.b.call(ctx, "finding the predecessor", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
			resp, err := cli.Get(ctx, c.b.prefix,
				append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithMaxCreateRev(rev - 1)},
					clientv3.WithLastCreate()...)...)
			if err != nil {
				return err
			}
			pred = nil
			if len(resp.Kvs) > 0 {
				pred = resp.Kvs[0]
			}
			return nil
		})
		if err != nil {
			return time.Time{}, time.Time{}, predecessor{}, err
		}
		if pred == nil {
			return vacant, time.Now(), last, nil
		}
		p := predecessor{key: string(pred.Key), lease: clientv3.LeaseID(pred.Lease)}
		p.ttl = c.b.grantedTTL(ctx, p.lease)
		if err := c.waitDeleted(ctx, p.key); err != nil {
			return time.Time{}, time.Time{}, predecessor{}, err
		}
		vacant, last = time.Now(), p
	}
}

// waitDeleted returns once key is deleted. It watches the key on one
// member and checks every request timeout that the member still answers
// and the key still exists; a member that fails is left for another.
func (c *candidacy) waitDeleted(ctx context.Context, key string) error {
	exists := func(ctx context.Context, cli *clientv3.Client) (bool, int64, error) {
		resp, err := cli.Get(ctx, key, clientv3.WithCountOnly())
		if err != nil {
			return false, 0, err
		}
		return resp.Count > 0, resp.Header.Revision, nil
	}
	return c.b.watchLoop(ctx, "watching the predecessor", func(ctx context.Context, i int, cli *clientv3.Client) (bool, int64, error) {
		found, rev, err := exists(ctx, cli)
		return !found, rev, err
	}, func(ctx context.Context, i int, cli *clientv3.Client, rev int64) error {
		return c.b.follow(ctx, i, cli, key, rev, []clientv3.OpOption{clientv3.WithFilterPut()},
			func(ctx context.Context) (bool, error) {
				found, _, err := exists(ctx, cli)
				return !found, err
			},
			func(_ context.Context, evs []*clientv3.Event) (bool, error) {
				for _, ev := range evs {
					if ev.Type == mvccpb.DELETE {
						return true, nil
					}
				}
				return false, nil
			})
	})
}

// watchLoop runs start on a member chosen by call, and unless it reports
// done, watch on that member from the revision it read; when the member
// fails, it starts again on another. It returns nil when done, or the
// error when every member failed in turn or the error is not a member's
// fault.
func (b *Backend) watchLoop(ctx context.Context, what string,
	start func(ctx context.Context, i int, cli *clientv3.Client) (done bool, rev int64, err error),
	watch func(ctx context.Context, i int, cli *clientv3.Client, rev int64) error) error {
	faults := 0
	for {
		var (
			member int
			client *clientv3.Client
			rev    int64
			done   bool
		)
		err := b.call(ctx, what, true, func(ctx context.Context, i int, cli *clientv3.Client) error {
			var err error
			done, rev, err = start(ctx, i, cli)
			member, client = i, cli
			return err
		})
		if err != nil || done {
			return err
		}
		began := time.Now()
		err = watch(ctx, member, client, rev)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !memberFault(err):
			return b.failed(ctx, what, err)
		}
		b.pool.faulted(member, err)
		// A member that watched well for a while is not one more fault in
		// a row; one that fails at once every time, on every member, is.
		if time.Since(began) > b.ttl {
			faults = 0
		}
		if faults++; faults > len(b.pool.members) {
			return b.failed(ctx, what, fmt.Errorf("%w: %w", errEveryMember, err))
		}
	}
}

// verify confirms that the candidate's key still exists with the revision
// it was created at, and that its lease has time left; the lease check's
// send time and remaining TTL prove liveness from this point on. then runs
// in the key check's transaction, whose response it returns.
func (c *candidacy) verify(ctx context.Context, rev int64, then ...clientv3.Op) (election.Validity, *clientv3.TxnResponse, error) {
	resp, err := c.checkKey(ctx, rev, then...)
	if err != nil {
		return election.Validity{}, nil, err
	}
	var v election.Validity
	err = c.b.call(ctx, "checking the lease", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		sent := time.Now()
		ttl, err := cli.TimeToLive(ctx, c.lease)
		if err != nil {
			return err
		}
		// Not more than granted: after a Raft leader change etcd extends
		// every lease by its election timeout, but successors wait out
		// only the granted TTL (waitOut).
		v = election.Validity{Sent: sent, TTL: time.Duration(min(ttl.TTL, ttl.GrantedTTL)) * time.Second}
		return nil
	})
	if err != nil {
		return election.Validity{}, nil, err
	}
	if v.TTL <= 0 {
		return election.Validity{}, nil, fmt.Errorf("lease %x expired: %w", c.lease, election.ErrLost)
	}
	return v, resp, nil
}

func (c *candidacy) checkKey(ctx context.Context, rev int64, then ...clientv3.Op) (*clientv3.TxnResponse, error) {
	var resp *clientv3.TxnResponse
	err := c.b.call(ctx, "checking the candidate key", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		var err error
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(c.key), "=", rev)).
			Then(then...).
			Commit()
		return err
	})
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("candidate key %s is gone: %w", c.key, election.ErrLost)
	}
	return resp, nil
}

// Renew checks that the key (once created) is still ours, then refreshes
// the lease once.
func (c *candidacy) Renew(ctx context.Context) (election.Validity, error) {
	if rev := c.createRev(); rev != 0 {
		if _, err := c.checkKey(ctx, rev); err != nil {
			return election.Validity{}, err
		}
	}
	var v election.Validity
	// Not requireLeader: KeepAliveOnce resends at once on "no leader"
	// until its deadline, while a member that waits for a leader answers
	// as soon as there is one.
	err := c.b.call(ctx, "renewing the lease", false, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		sent := time.Now()
		resp, err := cli.KeepAliveOnce(ctx, c.lease)
		if err != nil {
			return err
		}
		v = election.Validity{Sent: sent, TTL: time.Duration(resp.TTL) * time.Second}
		return nil
	})
	return v, err
}

// Resign deletes the candidate's key, so the successor's watch fires at
// once; a candidacy that got past its campaign's wait (cleared) leaves the
// resigned marker in the same transaction, which tells the successor this
// was a handover it need not wait out (waitOut). The lease is left to
// expire and takes the marker with it. A candidacy that never created its
// key revokes its lease instead.
//
// Unlike the other calls, Resign tries again (every request timeout) until
// it succeeds or ctx ends when no member could serve it, for instance
// while etcd elects a new Raft leader: the engine does not call it twice,
// and a key left behind keeps every successor waiting for the lease to
// expire, which a Raft leader change stretches to 2 × TTL + 1 s.
func (c *candidacy) Resign(ctx context.Context) error {
	for {
		err := c.resign(ctx)
		if err == nil || !errors.Is(err, errEveryMember) {
			return err
		}
		t := time.NewTimer(c.b.requestTimeout)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (c *candidacy) resign(ctx context.Context) error {
	c.mu.Lock()
	rev, cleared := c.rev, c.cleared
	c.mu.Unlock()
	if rev != 0 {
		ops := []clientv3.Op{clientv3.OpDelete(c.key)}
		if cleared {
			// The engine stepped down before it resigns: the successor need
			// not wait out this candidacy (waitOut).
			ops = append(ops, c.b.resignedOps(c.lease, c.lease)...)
		}
		return c.b.call(ctx, "deleting the candidate key", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
			_, err := cli.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(c.key), "=", rev)).
				Then(ops...).
				Commit()
			return err
		})
	}
	err := c.b.call(ctx, "revoking the lease", true, func(ctx context.Context, _ int, cli *clientv3.Client) error {
		_, err := cli.Revoke(ctx, c.lease)
		return err
	})
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil
	}
	return err
}

// Observe reports the leader (the key with the lowest create revision) at
// start and after every change under the prefix. It follows the prefix on
// one member at a time, re-reading the leader every request timeout to
// know that member still answers, and moves to another member when it
// does not; it returns when every member failed in turn.
func (b *Backend) Observe(ctx context.Context, fn func(election.Leader)) error {
	var (
		last     election.Leader
		reported bool
	)
	report := func(ctx context.Context, cli *clientv3.Client) (int64, error) {
		l, rev, err := b.readLeader(ctx, cli)
		if err != nil {
			return 0, err
		}
		if !reported || l != last {
			last, reported = l, true
			fn(l)
		}
		return rev, nil
	}
	return b.watchLoop(ctx, "watching the election", func(ctx context.Context, _ int, cli *clientv3.Client) (bool, int64, error) {
		rev, err := report(ctx, cli)
		return false, rev, err
	}, func(ctx context.Context, i int, cli *clientv3.Client, rev int64) error {
		reread := func(ctx context.Context) (bool, error) {
			_, err := report(ctx, cli)
			return false, err
		}
		return b.follow(ctx, i, cli, b.prefix, rev, []clientv3.OpOption{clientv3.WithPrefix()}, reread,
			func(ctx context.Context, _ []*clientv3.Event) (bool, error) { return reread(ctx) })
	})
}

// readLeader reads the current leader and the revision it was read at.
func (b *Backend) readLeader(ctx context.Context, cli *clientv3.Client) (election.Leader, int64, error) {
	resp, err := cli.Get(ctx, b.prefix, append([]clientv3.OpOption{clientv3.WithPrefix()}, clientv3.WithFirstCreate()...)...)
	if err != nil {
		return election.Leader{}, 0, err
	}
	var l election.Leader
	if len(resp.Kvs) > 0 {
		l = election.Leader{ID: string(resp.Kvs[0].Value), Token: resp.Kvs[0].CreateRevision}
	}
	return l, resp.Header.Revision, nil
}
