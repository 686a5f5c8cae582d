package redislock

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// TestEnginesOnRedis runs two engines on this backend against one real
// Redis: exactly one leads, and a resignation hands over within
// milliseconds through the release message.
func TestEnginesOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 5 * time.Second
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	engines := map[string]*election.Engine{}
	for _, id := range []string{"pod-a", "pod-b"} {
		e, err := election.New(election.Config{
			Election: "test", Identity: id, TTL: ttl, Logger: testLogger(t),
			Backend: newBackend(t, []*redistest.Server{srv}, id, ttl, nil),
		})
		if err != nil {
			t.Fatalf("election.New: %v", err)
		}
		engines[id] = e
		wg.Go(func() {
			if err := e.Run(ctx); err != nil {
				t.Errorf("Run %s: %v", id, err)
			}
		})
	}
	// leaders returns who claims to lead, and whether both agree on it.
	leaders := func() (leading []string, agreed string) {
		var seen []string
		for id, e := range engines {
			st, _ := e.Status()
			if st.IsLeader {
				leading = append(leading, id)
				seen = append(seen, id)
			} else {
				seen = append(seen, st.Leader)
			}
		}
		if seen[0] == seen[1] {
			agreed = seen[0]
		}
		return leading, agreed
	}

	var first string
	eventually(t, 10*time.Second, "one leader both engines agree on", func() bool {
		l, agreed := leaders()
		if len(l) > 1 {
			t.Fatalf("two leaders: %v", l)
		}
		first = agreed
		return len(l) == 1 && agreed == l[0]
	})
	firstStatus, _ := engines[first].Status()

	resigned := time.Now()
	if err := engines[first].Resign(t.Context()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	var took time.Duration
	eventually(t, 10*time.Second, "the other engine to lead", func() bool {
		l, _ := leaders()
		if len(l) > 1 {
			t.Fatalf("two leaders: %v", l)
		}
		took = time.Since(resigned)
		return len(l) == 1 && l[0] != first
	})
	// Well under the backend's 1s poll: the release message did it.
	if took > 750*time.Millisecond {
		t.Errorf("handover took %s, want milliseconds", took)
	}
	t.Logf("handover from %s took %s", first, took)
	for id, e := range engines {
		if st, _ := e.Status(); st.IsLeader && st.FencingToken <= firstStatus.FencingToken {
			t.Errorf("%s leads with token %d, not above the first term's %d", id, st.FencingToken, firstStatus.FencingToken)
		}
	}
}

// TestOutageMakesEveryEngineNotReady: with Redis unreachable for three
// TTLs, no engine may stay ready or keep naming a leader that may have
// stepped down (the etcd backend's behaviour under the same outage).
func TestOutageMakesEveryEngineNotReady(t *testing.T) {
	srv := redistest.Start(t)
	proxy := tcpproxy.Start(t, srv.Addr())
	const ttl = time.Second
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	var engines []*election.Engine
	for _, id := range []string{"pod-a", "pod-b"} {
		clients := []Client{redis.NewClient(baseClientOptions(proxy.Addr(), opTimeout(ttl)))}
		b, err := NewWithClients(clients, Config{Params: election.Params{Election: "test", Identity: id, TTL: ttl}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		e, err := election.New(election.Config{Election: "test", Identity: id, TTL: ttl, Logger: testLogger(t), Backend: b})
		if err != nil {
			t.Fatalf("election.New: %v", err)
		}
		engines = append(engines, e)
		wg.Go(func() { _ = e.Run(ctx) })
	}
	skipWarmUp(t, []*redistest.Server{srv})
	eventually(t, 20*time.Second, "a leader every engine names and is ready with", func() bool {
		for _, e := range engines {
			if st, _ := e.Status(); !st.Ready || st.Leader == "" {
				return false
			}
		}
		return true
	})
	proxy.Reset()
	// Three TTLs: every engine must by then say not ready and name nobody.
	eventually(t, 3*ttl, "every engine to be not ready and name no leader", func() bool {
		for _, e := range engines {
			if st, _ := e.Status(); st.Ready || st.Leader != "" || st.IsLeader {
				return false
			}
		}
		return true
	})
	proxy.Pass()
	eventually(t, 20*time.Second, "one leader again", func() bool {
		leaders := 0
		for _, e := range engines {
			st, _ := e.Status()
			if !st.Ready || st.Leader == "" {
				return false
			}
			if st.IsLeader {
				leaders++
			}
		}
		return leaders == 1
	})
}
