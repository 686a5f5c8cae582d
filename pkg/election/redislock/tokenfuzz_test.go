package redislock

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// envInt reads an integer from the environment, or returns def.
func envInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// fuzzTerm is one won term as the test saw it.
type fuzzTerm struct {
	who   string
	token int64
	// The round was sent at sent and won before won, when Campaign
	// returned (which can be later: Campaign also stops its listeners).
	sent, won time.Time
	end       time.Time // resignation began, or the validity ran out
}

// TestRedlockTokenOrderRandomized runs three candidates against three real
// masters, each candidate behind its own proxy to each master, and lets a
// seeded schedule delay, drop and restore single links and start and end
// campaigns at random. Every term won after another ended must have a
// greater token, and no two terms may overlap.
//
// REDISLOCK_FUZZ_SEED picks the seed (default: the clock; it is logged),
// REDISLOCK_FUZZ_TRIALS the number of trials (default 4). The seed fixes the
// schedule, not the machine's timing, so a replay repeats the same
// decisions, not necessarily the same interleaving.
func TestRedlockTokenOrderRandomized(t *testing.T) {
	seed := envInt(t, "REDISLOCK_FUZZ_SEED", time.Now().UnixNano()%1_000_000)
	trials := envInt(t, "REDISLOCK_FUZZ_TRIALS", 4)
	t.Logf("seeds %d..%d (replay one: REDISLOCK_FUZZ_SEED=<seed> REDISLOCK_FUZZ_TRIALS=1)", seed, seed+trials-1)
	for i := range trials {
		s := seed + i
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { fuzzTokens(t, s) })
	}
}

func fuzzTokens(t *testing.T, seed int64) {
	const (
		ttl   = time.Second // requests time out after 100ms
		steps = 80
	)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x746f6b656e))
	servers := redistest.StartN(t, 3)
	skipWarmUp(t, servers)
	names := []string{"a", "b", "c"}
	links := make([][]*tcpproxy.Proxy, len(names)) // links[candidate][master]
	backends := make([]*Backend, len(names))
	for i, id := range names {
		links[i] = proxiesFor(t, servers)
		clients := make([]Client, len(servers))
		for j, p := range links[i] {
			clients[j] = redis.NewClient(baseClientOptions(p.Addr(), opTimeout(ttl)))
		}
		b, err := NewWithClients(clients, Config{
			Params: election.Params{Election: "test", Identity: id, TTL: ttl}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		backends[i] = b
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		mu      sync.Mutex
		terms   []*fuzzTerm
		busy    = make([]bool, len(names))               // campaigning or leading
		leading = make([]election.Candidacy, len(names)) // the won candidacy, until resigned
		current = make([]*fuzzTerm, len(names))
		wg      sync.WaitGroup
	)
	campaignOf := func(i int) {
		defer wg.Done()
		cctx, ccancel := context.WithTimeout(ctx, 3*ttl)
		defer ccancel()
		c, _, err := backends[i].Candidate(cctx)
		if err == nil {
			var term election.Term
			term, err = c.Campaign(cctx)
			if err == nil {
				mu.Lock()
				ft := &fuzzTerm{who: names[i], token: term.Token, sent: term.Validity.Sent, won: time.Now(),
					end: term.Validity.Sent.Add(term.Validity.TTL)}
				if took := ft.won.Sub(ft.sent); took > ttl {
					t.Errorf("%s won token %d, but Campaign returned %v after the round was sent, past its validity", ft.who, ft.token, took)
				}
				terms = append(terms, ft)
				leading[i], current[i] = c, ft
				mu.Unlock()
				return
			}
		}
		mu.Lock()
		busy[i] = false
		mu.Unlock()
	}
	resign := func(i int) {
		mu.Lock()
		c, ft := leading[i], current[i]
		leading[i], current[i] = nil, nil
		if ft != nil && time.Now().Before(ft.end) {
			ft.end = time.Now()
		}
		mu.Unlock()
		if c != nil {
			_ = c.Resign(ctx)
		}
		mu.Lock()
		busy[i] = false
		mu.Unlock()
	}

	for step := range steps {
		i, j := rng.IntN(len(names)), rng.IntN(len(servers))
		switch k := rng.IntN(10); {
		case k < 2:
			links[i][j].Delay(time.Duration(rng.IntN(150)) * time.Millisecond)
		case k < 3:
			links[i][j].Blackhole()
		case k < 4:
			links[i][j].Pass()
		case k < 8:
			mu.Lock()
			start := !busy[i]
			busy[i] = true
			mu.Unlock()
			if start {
				wg.Add(1)
				go campaignOf(i)
			}
		default:
			resign(i)
		}
		_ = step
		pause(t, time.Duration(5+rng.IntN(100))*time.Millisecond)
	}
	for i := range names {
		for _, p := range links[i] {
			p.Pass()
		}
	}
	cancel()
	wg.Wait()
	for i := range names {
		resign(i)
	}

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d terms", len(terms))
	for _, a := range terms {
		for _, b := range terms {
			if a == b {
				continue
			}
			// b's round began after a's term ended: b won after it.
			if b.sent.After(a.end) && b.token <= a.token {
				t.Errorf("%s won token %d after %s's term with token %d ended", b.who, b.token, a.who, a.token)
			}
			// b's round began after a had won, and b had won before a's
			// term ended.
			if b.sent.After(a.won) && b.won.Before(a.end) {
				t.Errorf("%s (token %d) won while %s's term (token %d) was valid", b.who, b.token, a.who, a.token)
			}
		}
	}
}
