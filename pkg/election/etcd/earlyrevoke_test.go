package etcd_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
)

// etcd can end leases before their TTL: a Raft leader that was paused as a
// whole (SIGSTOP, a frozen VM) and resumes after it was deposed revokes
// every lease its stale lessor thinks expired, and the revocation is
// forwarded to the new Raft leader and committed, although the holders kept
// renewing them there (etcd 3.7.3: ensureLeadership, the fix for etcd issue
// #15247, is skipped while the member's Raft ticks look recent, which they
// do at once after SIGCONT; docs/safety.md). A leader cut off from etcd at
// that moment cannot learn of it and claims until its own deadline; no
// other candidate may claim before that. Here the revocations are made by
// hand while the leader's connection to etcd is blackholed:
//
//   - every lease, as etcd does: the followers' keys go too, so the one that
//     campaigns again first finds no predecessor at all;
//   - the leader's lease only, then the candidate waiting it out is stopped
//     (it resigns without having led): the next one must still wait.
func TestNoClaimWhileAnEarlyRevokedLeaderMayStillClaim(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every bool // revoke every candidate's lease, not only the leader's
		stop  bool // stop b while it waits out a
	}{
		{name: "every lease", every: true},
		{name: "leader's lease, then the next candidate resigns", stop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := etcdtest.Single(t)
			url := cluster.ClientURLs()[0]
			proxy := tcpproxy.Start(t, strings.TrimPrefix(url, "http://"))
			a := startCandidate(t, []string{"http://" + proxy.Addr()}, "a")
			a.waitStatus(t, "leadership", isLeader)
			b := startCandidate(t, cluster.ClientURLs(), "b")
			b.waitStatus(t, "following a", func(s election.Status) bool { return s.Ready && s.Leader == "a" })
			c := startCandidate(t, cluster.ClientURLs(), "c")
			c.waitStatus(t, "following a", func(s election.Status) bool { return s.Ready && s.Leader == "a" })

			cli := newClient(t, cluster.ClientURLs())
			resp, err := cli.Get(t.Context(), etcd.DefaultPrefix+"test/", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			proxy.Blackhole()
			revoked := time.Now()
			for _, kv := range resp.Kvs {
				if !tc.every && string(kv.Value) != "a" {
					continue
				}
				if _, err := cli.Revoke(t.Context(), clientv3.LeaseID(kv.Lease)); err != nil {
					t.Fatal(err)
				}
			}
			others := []*candidate{b, c}
			if tc.stop {
				b.waitStatus(t, "campaigning after a's key went", func(s election.Status) bool { return s.Leader != "a" })
				b.stop()
				others = []*candidate{c}
			}
			a.waitStatus(t, "stepping down at its deadline", func(s election.Status) bool { return !s.IsLeader })
			aEnd := a.leadershipEnd(t)
			var first *candidate
			var firstAt time.Time
			deadline := time.Now().Add(wait)
			for first == nil {
				for _, o := range others {
					if st, _ := o.engine.Status(); st.IsLeader && (first == nil || st.Since.Before(firstAt)) {
						first, firstAt = o, st.Since
					}
				}
				if time.Now().After(deadline) {
					t.Fatal("nobody leads after the revocation")
				}
				poll := time.NewTimer(5 * time.Millisecond)
				<-poll.C
			}
			if firstAt.Before(aEnd) {
				t.Fatalf("%s claimed leadership %v after the revocation, %v before a stopped claiming",
					first.id, firstAt.Sub(revoked).Round(time.Millisecond), aEnd.Sub(firstAt).Round(time.Millisecond))
			}
			t.Logf("a stopped claiming %v after the revocation, %s claimed %v after it", aEnd.Sub(revoked).Round(time.Millisecond),
				first.id, firstAt.Sub(revoked).Round(time.Millisecond))
		})
	}
}

// leadershipEnd returns when the candidate's last term ended, from its
// recorded statuses: when the first status that is not leading after one
// that is was read (no earlier than the end; Changed is not it: a status
// that Engine.Status cuts at the deadline keeps the Changed it had).
func (c *candidate) leadershipEnd(t *testing.T) time.Time {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if end := c.lastEnd(); !end.IsZero() {
			return end
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no end of leadership recorded", c.id)
		}
		poll := time.NewTimer(5 * time.Millisecond)
		<-poll.C
	}
}

func (c *candidate) lastEnd() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var end time.Time
	leading := false
	for i, st := range c.history {
		switch {
		case st.IsLeader:
			leading = true
		case leading:
			end, leading = c.seen[i], false
		}
	}
	return end
}

// The mechanism behind the "every lease" case, without its races: a
// candidate that finds nobody ahead of it cannot tell a new election from
// one whose leader's key etcd just revoked early, so it claims only after a
// whole TTL (and 2 %) with nobody ahead.
func TestAFirstCandidateWaitsOutAnyEarlierLeader(t *testing.T) {
	cluster := etcdtest.Single(t)
	cand := rawCandidacy(t, cluster.ClientURLs(), "first", "a")
	keepRenewing(t, cand)
	start := time.Now()
	term, err := cand.Campaign(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < ttl {
		t.Fatalf("the first candidate claimed %v after it began, within one TTL (%v)", took, ttl)
	}
	if !term.Vacant.IsZero() || term.Kind != "" {
		t.Errorf("term %+v: want no predecessor (zero Vacant, no Kind)", term)
	}
}

// A switchover's successor that looks for its predecessor only after the
// handover has deleted everything ahead of it finds nobody; the handover
// marker on its own lease says nobody before it still claims, so it does not
// wait out a TTL (a rolling update hands over to a pod as soon as it queues).
func TestASuccessorThatLooksLateAfterASwitchoverDoesNotWait(t *testing.T) {
	cluster := etcdtest.Single(t)
	urls := cluster.ClientURLs()
	backend := func(id string) (*etcd.Backend, election.Candidacy) {
		b, c := rawBackend(t, urls, "late", id)
		keepRenewing(t, c)
		return b, c
	}
	lb, leader := backend("l")
	if _, err := leader.Campaign(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, succ := backend("s")
	// The successor's key is in line (its campaign's first step), but it
	// has not read the line yet.
	cli := newClient(t, urls)
	lease, err := strconv.ParseInt(b.Handle(succ), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(t.Context(), b.Prefix()+b.Handle(succ), "s", clientv3.WithLease(clientv3.LeaseID(lease))); err != nil {
		t.Fatal(err)
	}
	if err := lb.HandOver(t.Context(), leader, "s"); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	start := time.Now()
	if _, err := succ.Campaign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= ttl/2 {
		t.Fatalf("the successor claimed %v after a switchover, want well under the TTL %v: it waited", took, ttl)
	}
}
