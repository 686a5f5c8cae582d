package redislock

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/electiontest"
)

// TestConformance runs the backend conformance suite on one real Redis
// and on Redlock over three, each server behind a proxy that the suite's
// outage resets.
func TestConformance(t *testing.T) {
	for _, n := range []int{1, 3} {
		name := "single"
		if n > 1 {
			name = "redlock"
		}
		t.Run(name, func(t *testing.T) { electiontest.Run(t, harness(t, n)) })
	}
}

func harness(t *testing.T, n int) electiontest.Harness {
	servers := redistest.StartN(t, n)
	proxies := make([]*tcpproxy.Proxy, n)
	admins := make([]*redis.Client, n)
	for i, s := range servers {
		proxies[i] = tcpproxy.Start(t, s.Addr())
		admins[i] = newClient(t, s.Addr())
	}
	// Two seconds, not the 1s the suite could run with: each request to a
	// master is bounded by TTL/10, and on a loaded 2-core machine 100ms
	// timeouts made waiters' rounds fail at random (Vanished, Switchover).
	const ttl = 2 * time.Second
	return electiontest.Harness{
		TTL: ttl,
		New: func(t *testing.T, p election.Params) election.Backend {
			clients := make([]Client, n)
			for i, px := range proxies {
				clients[i] = redis.NewClient(baseClientOptions(px.Addr(), opTimeout(p.TTL)))
				// A fresh server grants nothing for one TTL per election
				// (see acquire.lua); the warm-up has its own test.
				_ = admins[i].SetNX(t.Context(), DefaultKeyPrefix+p.Election+":since", 0, 0).Err()
			}
			b, err := NewWithClients(clients, Config{Params: p, Logger: testLogger(t)})
			if err != nil {
				t.Fatalf("NewWithClients: %v", err)
			}
			return b
		},
		Outage: func(t *testing.T) func() {
			for _, px := range proxies {
				px.Reset()
			}
			return func() {
				for _, px := range proxies {
					px.Pass()
				}
			}
		},
		Delete: func(t *testing.T, p election.Params) {
			key := DefaultKeyPrefix + p.Election
			for _, a := range admins {
				v, err := a.Get(t.Context(), key).Result()
				if err == redis.Nil {
					continue
				}
				if err != nil {
					t.Fatalf("GET %s: %v", key, err)
				}
				if id, _ := parseValue(v); id == p.Identity {
					if err := a.Del(t.Context(), key).Err(); err != nil {
						t.Fatalf("DEL %s: %v", key, err)
					}
				}
			}
		},
	}
}
