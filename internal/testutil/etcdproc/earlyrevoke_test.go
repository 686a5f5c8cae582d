//go:build etcdbug

package etcdproc

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestEtcdRevokesLiveLeasesAfterAPausedRaftLeaderResumes reproduces the
// etcd behaviour the etcd backend's failover wait exists for
// (docs/safety.md, Known limits): leases kept alive every 200 ms through
// the two other members are revoked at once when a SIGSTOPped Raft leader,
// deposed meanwhile, is continued. It passes when that happens within
// etcdbugPauses pauses and fails if it never does, which is the signal to
// re-read that section after an etcd upgrade. Not part of `make test` (it
// checks etcd, not this project); run it with
//
//	go test -tags etcdbug -run TestEtcdRevokes -v ./internal/testutil/etcdproc/
func TestEtcdRevokesLiveLeasesAfterAPausedRaftLeaderResumes(t *testing.T) {
	const (
		etcdbugPauses = 30
		leases        = 3
		leaseTTL      = 2 // seconds
		pause         = 6 * time.Second
		renewEvery    = 200 * time.Millisecond
		renewTimeout  = 400 * time.Millisecond
		watchAfter    = 4 * time.Second
	)
	c := Start(t, 3)
	for i := range etcdbugPauses {
		lost, after, err := pauseOnce(c, leases, leaseTTL, pause, renewEvery, renewTimeout, watchAfter)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pause %d: %d of %d live leases gone %v after the resume", i, lost, leases, after.Round(time.Millisecond))
		if lost > 0 {
			return
		}
	}
	t.Fatalf("no lease was revoked early in %d pauses: etcd may have fixed it; re-read docs/safety.md (etcd can revoke a lease early)", etcdbugPauses)
}

// pauseOnce keeps leases alive through the members that do not lead Raft,
// pauses the Raft leader, continues it and reports how many leases were
// gone within watchAfter of the resume, and when the first was seen gone.
func pauseOnce(c *Cluster, leases int, ttl int64, pause, renewEvery, renewTimeout, watchAfter time.Duration) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raft, err := c.RaftLeader(ctx)
	if err != nil {
		return 0, 0, err
	}
	var others []*clientv3.Client
	for i := range c.Len() {
		if i == raft {
			continue
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Member(i).ClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return 0, 0, err
		}
		defer cli.Close()
		others = append(others, cli)
	}
	renewing, stop := context.WithCancel(ctx)
	defer stop()
	var ids []clientv3.LeaseID
	for range leases {
		g, err := others[0].Grant(ctx, ttl)
		if err != nil {
			return 0, 0, err
		}
		ids = append(ids, g.ID)
		go func(id clientv3.LeaseID) {
			for renewing.Err() == nil {
				for _, cli := range others {
					rctx, rcancel := context.WithTimeout(renewing, renewTimeout)
					_, err := cli.KeepAliveOnce(rctx, id)
					rcancel()
					if err == nil {
						break
					}
				}
				tick := time.NewTimer(renewEvery)
				select {
				case <-renewing.Done():
					tick.Stop()
				case <-tick.C:
				}
			}
		}(g.ID)
	}
	gone := func() int {
		n := 0
		for _, id := range ids {
			if r, err := others[0].TimeToLive(ctx, id); err != nil || r.TTL <= 0 {
				n++
			}
		}
		return n
	}
	m := c.Member(raft)
	if err := m.Pause(); err != nil {
		return 0, 0, err
	}
	wait(pause)
	if n := gone(); n > 0 {
		_ = m.Resume()
		return 0, 0, fmt.Errorf("%d leases expired during the pause: the renewals did not reach the new Raft leader", n)
	}
	if err := m.Resume(); err != nil {
		return 0, 0, err
	}
	resumed := time.Now()
	for time.Since(resumed) < watchAfter {
		if n := gone(); n > 0 {
			return n, time.Since(resumed), nil
		}
		wait(50 * time.Millisecond)
	}
	return 0, 0, nil
}

// wait holds for d: the pause is the experiment.
func wait(d time.Duration) {
	t := time.NewTimer(d)
	<-t.C
}
