package redislock

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestRedlockToleratesOneNodeDown(t *testing.T) {
	servers := redistest.StartN(t, 3)
	servers[0].Stop()
	b := newBackend(t, servers, "a", 5*time.Second, nil)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)
	if _, err := c.Renew(t.Context()); err != nil {
		t.Fatalf("Renew with one of three nodes down: %v", err)
	}
	if err := c.Resign(t.Context()); err != nil {
		t.Fatalf("Resign with one of three nodes down: %v", err)
	}
	for _, s := range servers[1:] {
		if n := newClient(t, s.Addr()).Exists(t.Context(), "leader-elector:test").Val(); n != 0 {
			t.Fatalf("lock still on %s after Resign", s.Addr())
		}
	}
}

func TestRedlockMajorityDown(t *testing.T) {
	servers := redistest.StartN(t, 3)
	b := newBackend(t, servers, "a", 5*time.Second, nil)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)
	servers[0].Stop()
	servers[1].Stop()

	_, err := c.Renew(t.Context())
	if err == nil || errors.Is(err, election.ErrLost) {
		t.Fatalf("Renew with two of three nodes down = %v, want a transient error", err)
	}

	other := newBackend(t, servers, "b", 5*time.Second, nil)
	if _, _, err := other.Candidate(t.Context()); err == nil || errors.Is(err, election.ErrLost) {
		t.Fatalf("Candidate with two of three nodes down = %v, want a transient error", err)
	}
}

// TestRedlockLostOnMajority: the lock gone from two of three nodes is lost,
// even though the third still has it; the leftover copy is released.
func TestRedlockLostOnMajority(t *testing.T) {
	servers := redistest.StartN(t, 3)
	b := newBackend(t, servers, "a", 5*time.Second, nil)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)
	for _, s := range servers[:2] {
		if err := newClient(t, s.Addr()).Del(t.Context(), "leader-elector:test").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Renew(t.Context()); !errors.Is(err, election.ErrLost) {
		t.Fatalf("Renew with the lock gone on two of three nodes = %v, want ErrLost", err)
	}
	if n := newClient(t, servers[2].Addr()).Exists(t.Context(), "leader-elector:test").Val(); n != 0 {
		t.Fatal("the minority copy of a lost lock was not released")
	}
}

// TestRedlockNoPartialWin: a candidate that gets only one node (the other
// two are held) must not win, and must not leave its copy behind.
func TestRedlockNoPartialWin(t *testing.T) {
	servers := redistest.StartN(t, 3)
	foreign, _ := newValue("other", "")
	for _, s := range servers[1:] {
		if err := newClient(t, s.Addr()).Set(t.Context(), "leader-elector:test", foreign, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := newBackend(t, servers, "a", 5*time.Second, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := candidate(t, b).Campaign(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign with two of three nodes held = %v, want DeadlineExceeded", err)
	}
	if n := newClient(t, servers[0].Addr()).Exists(t.Context(), "leader-elector:test").Val(); n != 0 {
		t.Fatal("a lock copy from a failed round was left behind")
	}
}

// TestRedlockTokensAcrossMajorities wins terms on different majorities,
// with nodes restarting empty in between, each term from a fresh backend
// (so no token is remembered in process): tokens must still increase. The
// third term's majority shares only node 0 with the second's, and node 0
// restarted empty before the second term: only the commit step puts the
// second term's token there.
func TestRedlockTokensAcrossMajorities(t *testing.T) {
	servers := redistest.StartN(t, 3)
	var last int64
	term := func(name string) {
		t.Helper()
		c := candidate(t, newBackend(t, servers, name, 5*time.Second, nil))
		got := campaign(t, c, 10*time.Second)
		t.Logf("%s: token %d", name, got.Token)
		if got.Token <= last {
			t.Fatalf("%s: token %d is not above the previous %d", name, got.Token, last)
		}
		last = got.Token
		if err := c.Resign(t.Context()); err != nil {
			t.Fatalf("%s: Resign: %v", name, err)
		}
	}

	// Raise node 2's counter so the nodes disagree from the start.
	if err := newClient(t, servers[2].Addr()).Set(t.Context(), "leader-elector:test:token", 40, 0).Err(); err != nil {
		t.Fatal(err)
	}
	term("all nodes")
	servers[0].Restart()
	servers[1].Stop()
	term("nodes 0 and 2, node 0 empty")
	servers[1].Restart()
	servers[2].Stop()
	term("nodes 0 and 1, node 1 empty")
	servers[2].Restart()
	servers[0].Stop()
	// Node 2 restarted empty and node 0 is down: only node 1 carries the
	// last token, and the commit of the previous term put it there.
	term("nodes 1 and 2, node 2 empty")
}

// TestRedlockRenewRaisesLaggingCounters: a node that restarted empty during
// a term (losing the lock and the counter) gets the term's token back on the
// next renewal.
func TestRedlockRenewRaisesLaggingCounters(t *testing.T) {
	servers := redistest.StartN(t, 3)
	b := newBackend(t, servers, "a", 5*time.Second, nil)
	c := candidate(t, b)
	term := campaign(t, c, 10*time.Second)
	servers[1].Restart()
	if _, err := c.Renew(t.Context()); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	for _, s := range servers {
		if n, _ := newClient(t, s.Addr()).Get(t.Context(), "leader-elector:test:token").Int64(); n != term.Token {
			t.Errorf("counter on %s = %d, want the term's token %d", s.Addr(), n, term.Token)
		}
	}
}

// TestRedlockTransientNodeFailure: a node that fails requests (without
// going down) is outvoted, and when it recovers nothing breaks.
func TestRedlockTransientNodeFailure(t *testing.T) {
	servers := redistest.StartN(t, 3)
	var down atomic.Bool
	i := 0
	b := newBackend(t, servers, "a", 5*time.Second, func(c Client) Client {
		i++
		if i == 1 {
			return switchClient{Client: c, down: &down}
		}
		return c
	})
	down.Store(true)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)
	if _, err := c.Renew(t.Context()); err != nil {
		t.Fatalf("Renew with one failing node: %v", err)
	}
	down.Store(false)
	if _, err := c.Renew(t.Context()); err != nil {
		t.Fatalf("Renew after the node recovered: %v", err)
	}
}
