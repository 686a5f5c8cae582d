package etcd_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
)

// Multi-member clusters leave peer connections closing for a few seconds.
func TestMain(m *testing.M) { etcdtest.VerifyTestMain(m) }

const (
	ttl  = 2 * time.Second
	wait = 20 * time.Second // generous bound for anything that should take well under a second
)

// candidate is an engine running in the background, with every status it
// published recorded.
type candidate struct {
	id      string
	engine  *election.Engine
	backend *etcd.Backend
	stop    func()

	mu      sync.Mutex
	history []election.Status
	seen    []time.Time // when each status of history was read
}

func startCandidate(t *testing.T, endpoints []string, id string) *candidate {
	t.Helper()
	opts := etcd.Options{Endpoints: endpoints, Prefix: etcd.DefaultPrefix, DialTimeout: 2 * time.Second}
	b, err := etcd.New(opts, election.Params{Election: "test", Identity: id, TTL: ttl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := election.New(election.Config{Election: "test", Identity: id, Backend: b, TTL: ttl,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := &candidate{id: id, engine: e, backend: b}
	ctx, cancel := context.WithCancel(context.Background())
	recCtx, stopRecording := context.WithCancel(context.Background())
	var run, rec sync.WaitGroup
	run.Go(func() {
		if err := e.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	})
	rec.Go(func() { c.record(recCtx) })
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			cancel()
			run.Wait()
			stopRecording()
			rec.Wait()
			b.Close()
		})
	}
	t.Cleanup(c.stop)
	return c
}

// record appends every status until ctx ends, and the final one then.
func (c *candidate) record(ctx context.Context) {
	for {
		st, changed := c.engine.Status()
		c.mu.Lock()
		c.history = append(c.history, st)
		c.seen = append(c.seen, time.Now())
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			st, _ := c.engine.Status()
			c.mu.Lock()
			c.history = append(c.history, st)
			c.seen = append(c.seen, time.Now())
			c.mu.Unlock()
			return
		case <-changed:
		}
	}
}

// waitStatus waits until the candidate's status satisfies ok.
func (c *candidate) waitStatus(t *testing.T, what string, ok func(election.Status) bool) election.Status {
	t.Helper()
	deadline := time.After(wait)
	for {
		st, changed := c.engine.Status()
		if ok(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: timed out waiting for %s; last status %+v", c.id, what, st)
		}
	}
}

func isLeader(s election.Status) bool { return s.IsLeader }

func newClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// waitQueued waits until n candidates' keys are in line.
func waitQueued(t *testing.T, cli *clientv3.Client, n int64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		resp, err := cli.Get(t.Context(), etcd.DefaultPrefix+"test/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d candidates never queued", n)
		}
		poll := time.NewTimer(5 * time.Millisecond)
		<-poll.C
	}
}

// rawCandidacy is a candidacy of identity id in election on its own
// backend, without an engine: the test campaigns, renews and resigns it.
func rawCandidacy(t *testing.T, endpoints []string, electionName, id string) election.Candidacy {
	t.Helper()
	_, c := rawBackend(t, endpoints, electionName, id)
	return c
}

// rawBackend is rawCandidacy with its backend (for Handoff, Reclaimer).
func rawBackend(t *testing.T, endpoints []string, electionName, id string) (*etcd.Backend, election.Candidacy) {
	t.Helper()
	b, err := etcd.New(etcd.Options{Endpoints: endpoints, Prefix: etcd.DefaultPrefix, DialTimeout: 2 * time.Second},
		election.Params{Election: electionName, Identity: id, TTL: ttl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, _, err := b.Candidate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

// keepRenewing renews cand every quarter of the TTL, as the engine does
// while a candidacy campaigns and leads (a campaign may wait a whole TTL,
// longer than an unrenewed lease lives), until stop or the test's end.
func keepRenewing(t *testing.T, cand election.Candidacy) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			tick := time.NewTimer(ttl / 4)
			select {
			case <-ctx.Done():
				tick.Stop()
				return
			case <-tick.C:
			}
			_, _ = cand.Renew(ctx)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// leaderKey returns the key and create revision of the candidate with the given identity.
func candidateKey(t *testing.T, cli *clientv3.Client, id string) (string, int64) {
	t.Helper()
	resp, err := cli.Get(t.Context(), etcd.DefaultPrefix+"test/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) == id {
			return string(kv.Key), kv.CreateRevision
		}
	}
	t.Fatalf("no key for %s", id)
	return "", 0
}

func TestLeaderIsVisibleToEtcdTooling(t *testing.T) {
	cluster := etcdtest.Single(t)
	a := startCandidate(t, cluster.ClientURLs(), "a")
	st := a.waitStatus(t, "leadership", isLeader)

	cli := newClient(t, cluster.ClientURLs())
	_, rev := candidateKey(t, cli, "a")
	if st.FencingToken != rev {
		t.Errorf("fencing token %d, want the key's create revision %d", st.FencingToken, rev)
	}
	// concurrency.Election is what `etcdctl elect` uses.
	s, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := concurrency.NewElection(s, strings.TrimSuffix(etcd.DefaultPrefix+"test", "/")).Leader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Kvs[0].Value); got != "a" {
		t.Errorf("etcd's election sees leader %q, want a", got)
	}
	if st.Leader != "a" || st.Identity != "a" || st.Backend != "etcd" || !st.Ready || st.Since.IsZero() {
		t.Errorf("unexpected leader status %+v", st)
	}
}

func TestExactlyOneLeaderAndAllAgree(t *testing.T) {
	cluster := etcdtest.Single(t)
	var cs []*candidate
	for _, id := range []string{"a", "b", "c"} {
		cs = append(cs, startCandidate(t, cluster.ClientURLs(), id))
	}
	leader := cs[0].waitStatus(t, "a known leader", func(s election.Status) bool { return s.Leader != "" || s.IsLeader })
	name := leader.Leader
	var token int64
	leaders := 0
	for _, c := range cs {
		st := c.waitStatus(t, "agreement on "+name, func(s election.Status) bool { return s.Leader == name && s.Ready })
		if st.IsLeader {
			leaders++
			token = st.FencingToken
		}
		if st.IsLeader != (c.id == name) {
			t.Errorf("%s: is_leader=%v but the leader is %s", c.id, st.IsLeader, name)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders, want 1", leaders)
	}
	for _, c := range cs {
		if st, _ := c.engine.Status(); st.FencingToken != token {
			t.Errorf("%s sees token %d, leader has %d", c.id, st.FencingToken, token)
		}
	}
}

func TestGracefulHandoverIsFasterThanTTL(t *testing.T) {
	cluster := etcdtest.Single(t)
	a := startCandidate(t, cluster.ClientURLs(), "a")
	first := a.waitStatus(t, "leadership", isLeader)
	b := startCandidate(t, cluster.ClientURLs(), "b")
	b.waitStatus(t, "seeing a lead", func(s election.Status) bool { return s.Leader == "a" })
	// Following may come before b's key is in line; one that arrives after
	// a has gone finds nobody ahead and waits a TTL (waitOut).
	waitQueued(t, newClient(t, cluster.ClientURLs()), 2)

	start := time.Now()
	a.stop()
	second := b.waitStatus(t, "takeover", isLeader)
	took := time.Since(start)
	if took >= ttl {
		t.Errorf("handover took %v, not faster than the %v TTL: the successor waited for expiry", took, ttl)
	}
	if second.FencingToken <= first.FencingToken {
		t.Errorf("token %d after handover, want more than %d", second.FencingToken, first.FencingToken)
	}
	// The resigned leader's last status must not claim leadership.
	a.mu.Lock()
	last := a.history[len(a.history)-1]
	a.mu.Unlock()
	if last.IsLeader {
		t.Errorf("stopped leader still claims leadership: %+v", last)
	}
}

func TestLeaderStepsDownWhenItsKeyIsDeleted(t *testing.T) {
	cluster := etcdtest.Single(t)
	a := startCandidate(t, cluster.ClientURLs(), "a")
	first := a.waitStatus(t, "leadership", isLeader)
	cli := newClient(t, cluster.ClientURLs())
	key, _ := candidateKey(t, cli, "a")
	if _, err := cli.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	a.waitStatus(t, "stepping down", func(s election.Status) bool { return !s.IsLeader })
	again := a.waitStatus(t, "leading again on a fresh key", isLeader)
	if again.FencingToken <= first.FencingToken {
		t.Errorf("new term token %d, want more than %d", again.FencingToken, first.FencingToken)
	}
}

func TestLeaderStepsDownWhenItsLeaseIsRevoked(t *testing.T) {
	cluster := etcdtest.Single(t)
	a := startCandidate(t, cluster.ClientURLs(), "a")
	first := a.waitStatus(t, "leadership", isLeader)
	cli := newClient(t, cluster.ClientURLs())
	key, _ := candidateKey(t, cli, "a")
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	a.waitStatus(t, "stepping down", func(s election.Status) bool { return !s.IsLeader })
	again := a.waitStatus(t, "leading again", isLeader)
	if again.FencingToken <= first.FencingToken {
		t.Errorf("new term token %d, want more than %d", again.FencingToken, first.FencingToken)
	}
}

// A waiting candidate whose key vanishes must not claim leadership with it
// when its predecessor goes (the hole in concurrency.Election.Campaign).
func TestWaitingCandidateRechecksItsKey(t *testing.T) {
	cluster := etcdtest.Single(t)
	cli := newClient(t, cluster.ClientURLs())
	a := startCandidate(t, cluster.ClientURLs(), "a")
	a.waitStatus(t, "leadership", isLeader)
	b := startCandidate(t, cluster.ClientURLs(), "b")
	b.waitStatus(t, "seeing a lead", func(s election.Status) bool { return s.Leader == "a" })

	// Wait until b's key exists, then delete it while b waits behind a.
	var bKey string
	var bRev int64
	deadline := time.Now().Add(wait)
	for bKey == "" {
		resp, err := cli.Get(t.Context(), etcd.DefaultPrefix+"test/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if string(kv.Value) == "b" {
				bKey, bRev = string(kv.Key), kv.CreateRevision
			}
		}
		if bKey == "" {
			if time.Now().After(deadline) {
				t.Fatal("b never created its key")
			}
			watchCtx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			<-cli.Watch(watchCtx, etcd.DefaultPrefix+"test/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
			cancel()
		}
	}
	if _, err := cli.Delete(t.Context(), bKey); err != nil {
		t.Fatal(err)
	}
	a.stop()
	st := b.waitStatus(t, "leadership on a fresh key", isLeader)
	if st.FencingToken == bRev {
		t.Fatalf("b claimed leadership with its deleted key (revision %d)", bRev)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.history {
		if s.IsLeader && s.FencingToken == bRev {
			t.Fatalf("b claimed leadership with its deleted key at some point: %+v", s)
		}
	}
}

func TestInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts etcd.Options
		ttl  time.Duration
		want string
	}{
		{"no endpoints", etcd.Options{Prefix: "/p/", DialTimeout: time.Second}, ttl, "Endpoints is required"},
		{"bad endpoint", etcd.Options{Endpoints: []string{"nohost"}, Prefix: "/p/", DialTimeout: time.Second}, ttl, "Endpoints"},
		{"bad scheme", etcd.Options{Endpoints: []string{"ftp://a:1"}, Prefix: "/p/", DialTimeout: time.Second}, ttl, "unsupported scheme"},
		{"short ttl", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Second}, time.Second, "below etcd's minimum"},
		{"fractional ttl", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Second}, 2500 * time.Millisecond, "whole seconds"},
		{"cert without key", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Second, Cert: "c.pem"}, ttl, "Cert and Key must be given together"},
		{"user without password", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Second, Username: "u"}, ttl, "needs a password"},
		{"duplicate endpoint", etcd.Options{Endpoints: []string{"127.0.0.1:1", "127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Second}, ttl, "given twice"},
		{"ttl above etcd's maximum", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Second}, etcd.MaxTTL + time.Second, "maximum lease"},
		{"missing CA file", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Second, CACert: "/nonexistent/ca.pem"}, ttl, "CACert"},
		{"same endpoint spelled twice", etcd.Options{Endpoints: []string{"http://Localhost:1/", "localhost:1"}, Prefix: "/p/", DialTimeout: time.Second}, ttl, "are the same endpoint"},
		{"same endpoint by http and https", etcd.Options{Endpoints: []string{"http://127.0.0.1:1", "https://127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Second}, ttl, "are the same endpoint"},
		{"dial timeout of 1 ns", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/", DialTimeout: time.Nanosecond}, ttl, "DialTimeout 1ns is outside [100ms, 10m0s]"},
		{"dial timeout of a million hours", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/", DialTimeout: 1e6 * time.Hour}, ttl, "DialTimeout 1000000h0m0s is outside"},
		{"no dial timeout", etcd.Options{Endpoints: []string{"127.0.0.1:1"}, Prefix: "/p/"}, ttl, "DialTimeout 0s is outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := etcd.New(tt.opts, election.Params{Election: "test", Identity: "a", TTL: tt.ttl}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRenewAfterLeaseLossIsErrLost(t *testing.T) {
	cluster := etcdtest.Single(t)
	b, err := etcd.New(etcd.Options{Endpoints: cluster.ClientURLs(), Prefix: "/p/", DialTimeout: 2 * time.Second}, election.Params{Election: "test", Identity: "a", TTL: ttl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cand, v, err := b.Candidate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v.IsZero() || v.TTL != ttl {
		t.Fatalf("grant validity %+v, want TTL %v", v, ttl)
	}
	if _, err := cand.Renew(t.Context()); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if err := cand.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err = cand.Renew(t.Context())
	if !errors.Is(err, election.ErrLost) {
		t.Fatalf("renew after revoke: %v, want ErrLost", err)
	}
	if _, err := cand.Campaign(t.Context()); !errors.Is(err, election.ErrLost) {
		t.Fatalf("campaign after revoke: %v, want ErrLost", err)
	}
}

// When etcd's own Raft leader changes, etcd extends every lease by its
// election timeout, so a crashed leader's key outlives its TTL. Failover is
// delayed, never early: the successor wins only after the crashed leader's
// lease could have expired, and within about 3 × TTL + 1 s (the lease
// outlives its TTL by the Raft election, then the successor waits it out).
func TestFailoverAcrossAnEtcdRaftLeaderChange(t *testing.T) {
	cluster := etcdtest.Cluster(t, 3)
	urls := cluster.ClientURLs()

	// a wins and renews until it "crashes": it simply stops renewing.
	crashed, err := etcd.New(etcd.Options{Endpoints: urls, Prefix: etcd.DefaultPrefix, DialTimeout: 2 * time.Second}, election.Params{Election: "test", Identity: "a", TTL: ttl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer crashed.Close()
	var (
		cand election.Candidacy
		term election.Term
	)
	for attempt := 0; ; attempt++ {
		// A loaded machine can let the fresh lease expire before the first
		// renewal; that is setup failing, not the behaviour under test.
		cand, _, err = crashed.Candidate(t.Context())
		if err == nil {
			// The first leader waits a TTL (waitOut), renewed meanwhile.
			stopRenewing := keepRenewing(t, cand)
			term, err = cand.Campaign(t.Context())
			stopRenewing()
		}
		if err == nil {
			break
		}
		if !errors.Is(err, election.ErrLost) || attempt == 4 {
			t.Fatal(err)
		}
	}
	var lastProof atomic.Int64 // send time of a's last acknowledged renewal, ns since start
	start := time.Now()
	lastProof.Store(int64(term.Validity.Sent.Sub(start)))
	renewCtx, crash := context.WithCancel(t.Context())
	renewing := make(chan struct{})
	go func() {
		defer close(renewing)
		tick := time.NewTicker(ttl / 4)
		defer tick.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-tick.C:
			}
			if v, err := cand.Renew(renewCtx); err == nil {
				lastProof.Store(int64(v.Sent.Sub(start)))
			}
		}
	}()

	b := startCandidate(t, urls, "b")
	b.waitStatus(t, "seeing a lead", func(s election.Status) bool { return s.Leader == "a" })

	raft, err := cluster.RaftLeader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	crash()
	<-renewing
	cluster.Member(raft).Stop()

	st := b.waitStatus(t, "takeover after the crash", isLeader)
	took := time.Since(start.Add(time.Duration(lastProof.Load())))
	if took < ttl {
		t.Fatalf("b led %v after a's last proof of liveness, before a's %v lease could expire", took, ttl)
	}
	if limit := 3*ttl + time.Second + 10*time.Second; took > limit {
		t.Errorf("failover took %v, beyond 3 × TTL + 1 s plus slack (%v)", took, limit)
	}
	if st.FencingToken <= term.Token {
		t.Errorf("token %d, want more than %d", st.FencingToken, term.Token)
	}
	t.Logf("failover across a Raft leader change: %v after the crashed leader's last proof (TTL %v)", took, ttl)
}

// A successor tells a resignation from a crash by the predecessor's lease.
func TestTermSaysHowThePredecessorWent(t *testing.T) {
	cluster := etcdtest.Single(t)
	cli := newClient(t, cluster.ClientURLs())
	newCandidacy := func(id string) election.Candidacy { return rawCandidacy(t, cluster.ClientURLs(), "test", id) }
	// takeover makes prev lead, queues next behind it, ends prev with end
	// and returns next's term. A term with no Vacant time is inconclusive:
	// prev ended before next had looked for its predecessor.
	takeover := func(t *testing.T, end func(prev election.Candidacy, key string)) election.Term {
		t.Helper()
		prev, next := newCandidacy("prev"), newCandidacy("next")
		keepRenewing(t, prev)
		defer keepRenewing(t, next)()
		if _, err := prev.Campaign(t.Context()); err != nil {
			t.Fatal(err)
		}
		won := make(chan election.Term, 1)
		errs := make(chan error, 1)
		go func() {
			term, err := next.Campaign(t.Context())
			won <- term
			errs <- err
		}()
		deadline := time.Now().Add(wait)
		for {
			resp, err := cli.Get(t.Context(), etcd.DefaultPrefix+"test/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err == nil && resp.Count == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("next never queued")
			}
			poll := time.NewTimer(5 * time.Millisecond)
			<-poll.C
		}
		key, _ := candidateKey(t, cli, "prev")
		end(prev, key)
		term := <-won
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if err := next.Resign(t.Context()); err != nil {
			t.Fatal(err)
		}
		return term
	}
	resign := func(prev election.Candidacy, _ string) {
		if err := prev.Resign(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	crash := func(_ election.Candidacy, key string) {
		// The lease goes the way an expired one does.
		kv, err := cli.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Revoke(t.Context(), clientv3.LeaseID(kv.Kvs[0].Lease)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		end  func(election.Candidacy, string)
		want string
	}{{"resign", resign, election.Handover}, {"crash", crash, election.Failover}} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				term := takeover(t, tc.end)
				if term.Vacant.IsZero() {
					continue
				}
				if term.Kind != tc.want {
					t.Fatalf("kind %q, want %q", term.Kind, tc.want)
				}
				return
			}
			t.Fatal("20 inconclusive takeovers")
		})
	}
}
