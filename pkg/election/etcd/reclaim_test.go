package etcd_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
)

func reclaimBackend(t *testing.T, endpoints []string, electionName, id string, leaseTTL time.Duration) *etcd.Backend {
	t.Helper()
	b, err := etcd.New(etcd.Options{Endpoints: endpoints, Prefix: etcd.DefaultPrefix, DialTimeout: 2 * time.Second},
		election.Params{Election: electionName, Identity: id, TTL: leaseTTL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// A process that crashed while leading left its key and lease behind; the
// restarted process of the same candidate releases them from the recorded
// handle, and the candidate waiting behind wins at once, not after the TTL.
func TestReclaimReleasesTheCrashedLeadersLease(t *testing.T) {
	cluster := etcdtest.Single(t)
	urls := cluster.ClientURLs()
	// Far longer than a reclaim may take; a first campaign waits it out
	// once (waitOut).
	const long = 10 * time.Second
	crashed := reclaimBackend(t, urls, "reclaim", "a", long)
	cand, _, err := crashed.Candidate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// It led and renewed at least once (which notes that it got past its
	// wait), then crashed: renewals stop.
	stop := keepRenewing(t, cand)
	if _, err := cand.Campaign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := cand.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	stop()
	handle := crashed.Handle(cand)
	if handle == "" {
		t.Fatal("Handle is empty for an etcd candidacy")
	}
	// b waits behind a.
	waiter := reclaimBackend(t, urls, "reclaim", "b", long)
	wc, _, err := waiter.Candidate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	keepRenewing(t, wc)
	won := make(chan error, 1)
	go func() {
		_, err := wc.Campaign(t.Context())
		won <- err
	}()
	// "a" crashes: its backend is simply abandoned (no resign, no revoke).
	// A stranger with another identity may not release it.
	if err := reclaimBackend(t, urls, "reclaim", "x", long).Reclaim(t.Context(), handle); err == nil {
		t.Fatal("Reclaim by another identity succeeded; want a refusal")
	}
	select {
	case err := <-won:
		t.Fatalf("b won (%v) while a's key should still stand", err)
	default:
	}
	start := time.Now()
	restarted := reclaimBackend(t, urls, "reclaim", "a", long)
	if err := restarted.Reclaim(t.Context(), handle); err != nil {
		t.Fatalf("Reclaim: %v", err)
	}
	select {
	case err := <-won:
		if err != nil {
			t.Fatalf("b's Campaign: %v", err)
		}
		t.Logf("b won %v after the restarted a reclaimed", time.Since(start))
	case <-time.After(long / 2):
		t.Fatalf("b did not win within %v of the reclaim (TTL %v): it waited the crashed leader out", long/2, long)
	}
	// Reclaiming again (a lease that is gone) is not an error.
	if err := restarted.Reclaim(t.Context(), handle); err != nil {
		t.Errorf("second Reclaim: %v", err)
	}
}

// A lease that carries keys other than the candidate's own is never revoked.
func TestReclaimRefusesALeaseWithOtherKeys(t *testing.T) {
	cluster := etcdtest.Single(t)
	urls := cluster.ClientURLs()
	admin, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	lease, err := admin.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, "/someone-else/key", "v", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	b := reclaimBackend(t, urls, "reclaim", "a", 60*time.Second)
	if err := b.Reclaim(ctx, "not-hex"); err == nil {
		t.Error("Reclaim of a malformed handle succeeded")
	}
	handle := strconv.FormatInt(int64(lease.ID), 16)
	if err := b.Reclaim(ctx, handle); err == nil {
		t.Fatal("Reclaim revoked a lease carrying another key")
	}
	if resp, err := admin.Get(ctx, "/someone-else/key"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the other key is gone (%v, %v)", resp, err)
	}
}

// A candidate that publishes its generation (a rolling update's --generation)
// carries its generation key on the same lease as its election key; the
// restarted process still releases that lease (found by the chaos suite's
// sidecar-restart nemesis: the restart used to cost a TTL).
func TestReclaimReleasesALeaseWithItsGeneration(t *testing.T) {
	cluster := etcdtest.Single(t)
	urls := cluster.ClientURLs()
	const long = 10 * time.Second
	crashed := reclaimBackend(t, urls, "reclaim", "a", long)
	cand, _, err := crashed.Candidate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// It led and renewed at least once (which notes that it got past its
	// wait), then crashed: renewals stop.
	stop := keepRenewing(t, cand)
	if _, err := cand.Campaign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := cand.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	stop()
	handle := crashed.Handle(cand)
	// WaitNewer publishes the generation on the candidacy's lease, then
	// waits (here for ever: nobody newer joins) until ctx ends.
	ctx, cancel := context.WithCancel(t.Context())
	published := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- crashed.WaitNewer(ctx, cand, 1, func() { close(published) }) }()
	select {
	case <-published:
	case err := <-done:
		t.Fatalf("WaitNewer: %v", err)
	case <-time.After(wait):
		t.Fatal("the generation was not published")
	}
	cancel()
	<-done

	admin, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	id, err := strconv.ParseInt(handle, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(t.Context(), wait)
	defer rcancel()
	before, err := admin.TimeToLive(rctx, clientv3.LeaseID(id), clientv3.WithAttachedKeys())
	if err != nil || len(before.Keys) != 3 {
		t.Fatalf("the lease carries %d keys (%v), want the election key, the generation key and the cleared key", len(before.Keys), err)
	}
	if err := reclaimBackend(t, urls, "reclaim", "a", long).Reclaim(rctx, handle); err != nil {
		t.Fatalf("Reclaim: %v", err)
	}
	// The keys are deleted; the lease, with nothing attached, is left to
	// expire (Reclaim says why).
	after, err := admin.TimeToLive(rctx, clientv3.LeaseID(id), clientv3.WithAttachedKeys())
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatal(err)
	}
	if err == nil && len(after.Keys) != 0 {
		t.Fatalf("after Reclaim the lease still carries %q, want no key", after.Keys)
	}
}

// A lease with less than a second left reads TTL 0 (etcd rounds down) but
// still holds its keys: the restarted process deletes them rather than
// leaving the waiters to wait out that last second (found by the chaos
// suite: restarts 0.6 s after a kill cost a TTL).
func TestReclaimReleasesALeaseInItsLastSecond(t *testing.T) {
	cluster := etcdtest.Single(t)
	urls := cluster.ClientURLs()
	admin, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	crashed := reclaimBackend(t, urls, "reclaim", "a", 3*time.Second)
	cand, _, err := crashed.Candidate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// It led and renewed at least once (which notes that it got past its
	// wait), then crashed: renewals stop.
	stop := keepRenewing(t, cand)
	if _, err := cand.Campaign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := cand.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	stop()
	handle := crashed.Handle(cand)
	id, err := strconv.ParseInt(handle, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	attached, err := admin.TimeToLive(t.Context(), clientv3.LeaseID(id), clientv3.WithAttachedKeys())
	if err != nil || len(attached.Keys) == 0 {
		t.Fatalf("the candidacy's lease carries no key (%v)", err)
	}
	key := string(attached.Keys[0])
	// Nobody renews the abandoned candidacy: wait until its lease reads 0.
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for {
		resp, err := admin.TimeToLive(ctx, clientv3.LeaseID(id))
		if err != nil {
			t.Fatal(err)
		}
		if resp.TTL == 0 {
			break
		}
		if resp.TTL < 0 {
			t.Fatal("the lease expired before it read 0; the test cannot tell a revoke from an expiry")
		}
		select {
		case <-ctx.Done():
			t.Fatal("the lease never read TTL 0")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if resp, err := admin.Get(ctx, key, clientv3.WithCountOnly()); err != nil || resp.Count != 1 {
		t.Fatalf("before Reclaim the key %s reads %v (%v), want it there", key, resp, err)
	}
	if err := reclaimBackend(t, urls, "reclaim", "a", 3*time.Second).Reclaim(ctx, handle); err != nil {
		t.Fatalf("Reclaim: %v", err)
	}
	// Linearizable read right after: a reclaimed lease's key is gone; one
	// left to expire would still be there for most of a second.
	resp, err := admin.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("after Reclaim the key %s is still there: the lease in its last second was left to expire", key)
	}
}
