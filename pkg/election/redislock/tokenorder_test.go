package redislock

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// newBackendVia returns a backend whose node i is reached through
// proxies[i], closed when the test ends; the servers' warm-up is skipped.
func newBackendVia(t *testing.T, servers []*redistest.Server, proxies []*tcpproxy.Proxy, identity string,
	ttl time.Duration) *Backend {
	t.Helper()
	skipWarmUp(t, servers)
	clients := make([]Client, len(proxies))
	for i, p := range proxies {
		clients[i] = redis.NewClient(baseClientOptions(p.Addr(), opTimeout(ttl)))
	}
	b, err := NewWithClients(clients, Config{
		Params: election.Params{Election: "test", Identity: identity, TTL: ttl}, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewWithClients: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// proxiesFor starts one proxy per server.
func proxiesFor(t *testing.T, servers []*redistest.Server) []*tcpproxy.Proxy {
	t.Helper()
	ps := make([]*tcpproxy.Proxy, len(servers))
	for i, s := range servers {
		ps[i] = tcpproxy.Start(t, s.Addr())
	}
	return ps
}

// TestRedlockTokenOrderCountsOnlyGrantingNodes is the interleaving that
// gave a later term the same token as an earlier one, when a node that did
// not grant the lock counted toward the majority that orders tokens.
//
// Nodes A, B, C; earlier terms (on A and C only) left counters A=1, B=0,
// C=1. Candidate Y's round: C grants (C=2); its request to B is held in
// the network and its link to A is cut. Meanwhile X wins on A (token 2) and
// B (1); C, held by Y, answers counter 2. X's term ends (it resigns). Then
// Y's request reaches B, which grants (B=2): Y holds B and C, a majority,
// and its token is max(2, 2) = 2, not greater than X's. Counting only the
// nodes that granted X the lock (A and B) makes X raise B to 2 before its
// term begins, so Y's grant on B issues 3.
func TestRedlockTokenOrderCountsOnlyGrantingNodes(t *testing.T) {
	const ttl = 10 * time.Second // one request may take up to a second
	servers := redistest.StartN(t, 3)
	a, c := servers[0], servers[2]
	yLinks := proxiesFor(t, servers)
	x := newBackend(t, servers, "x", ttl, nil)
	y := newBackendVia(t, servers, yLinks, "y", ttl)
	xc, yc := candidate(t, x), candidate(t, y)

	// The counters earlier terms on A and C left behind (set after both
	// candidates read them, as if those terms ran meanwhile).
	for _, s := range []*redistest.Server{a, c} {
		if err := newClient(t, s.Addr()).Set(t.Context(), "leader-elector:test:token", 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}

	yLinks[0].Blackhole() // Y never reaches A
	yLinks[1].Blackhole() // Y's request to B waits in the network
	yDone := campaignAsync(t.Context(), yc)
	var yValue string
	eventually(t, 5*time.Second, "C to grant Y the lock", func() bool {
		yValue = newClient(t, c.Addr()).Get(t.Context(), "leader-elector:test").Val()
		return yValue != ""
	})

	xTerm := campaign(t, xc, 5*time.Second)
	if err := xc.Resign(t.Context()); err != nil {
		t.Fatalf("X: Resign: %v", err)
	}
	t.Logf("X won and resigned with token %d", xTerm.Token)

	yLinks[1].Pass() // Y's request reaches B after X's term ended
	var yTerm election.Term
	select {
	case o := <-yDone:
		if o.err != nil {
			t.Fatalf("Y: Campaign: %v", o.err)
		}
		yTerm = o.term
	case <-time.After(30 * time.Second):
		t.Fatal("Y did not win")
	}
	if got := newClient(t, c.Addr()).Get(t.Context(), "leader-elector:test").Val(); got != yValue {
		t.Fatalf("Y won with a later round (lock value %q, first round's %q): X took longer than one "+
			"request timeout, so the interleaving did not happen", got, yValue)
	}
	t.Logf("Y won after X's term ended with token %d", yTerm.Token)
	if yTerm.Token <= xTerm.Token {
		t.Fatalf("Y's term, won after X's ended, has token %d, not greater than X's %d", yTerm.Token, xTerm.Token)
	}
}
