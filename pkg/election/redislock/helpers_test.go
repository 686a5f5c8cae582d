package redislock

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// After repeated dial failures go-redis probes the server once a
		// second in the background, and notices a closed client only after
		// its current one-second wait.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// newClient returns a go-redis client for addr, closed when the test ends.
func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testLogger logs through t, at debug level when -v is given.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name())
}

// newBackend returns a backend on fresh clients of servers, closed when the
// test ends, with the servers' warm-up skipped. wrap, if set, wraps each client.
func newBackend(t *testing.T, servers []*redistest.Server, identity string, ttl time.Duration,
	wrap func(Client) Client) *Backend {
	t.Helper()
	b := newBackendWarm(t, servers, identity, ttl, wrap)
	skipWarmUp(t, servers)
	return b
}

// newBackendWarm is newBackend with the servers' warm-up left in place.
func newBackendWarm(t *testing.T, servers []*redistest.Server, identity string, ttl time.Duration,
	wrap ...func(Client) Client) *Backend {
	t.Helper()
	clients := make([]Client, len(servers))
	for i, s := range servers {
		clients[i] = redis.NewClient(baseClientOptions(s.Addr(), opTimeout(ttl)))
		for _, w := range wrap {
			if w != nil {
				clients[i] = w(clients[i])
			}
		}
	}
	b, err := NewWithClients(clients, Config{Params: election.Params{Election: "test", Identity: identity, TTL: ttl}, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewWithClients: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// skipWarmUp records on each running server that it has known the election
// for long, so a fresh server grants at once instead of after one TTL. The
// warm-up itself is tested in TestFreshNodeWarmsUp and end to end.
func skipWarmUp(t *testing.T, servers []*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		c := newClient(t, s.Addr())
		// A stopped server simply keeps its warm-up when it comes back.
		_ = c.SetNX(t.Context(), DefaultKeyPrefix+"test:since", 0, 0).Err()
	}
}

// lossyClient loses every pub/sub message (it subscribes to no channel,
// so not even the subscription is confirmed), and counts script calls that
// got an answer.
type lossyClient struct {
	Client
	// refused counts answered script calls that returned a refusal: an
	// array whose first element is 0 (acquire.lua's "not yours").
	refused *atomic.Int64
}

func (c lossyClient) Subscribe(ctx context.Context, _ ...string) *redis.PubSub {
	return c.Client.Subscribe(ctx)
}

func (c lossyClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	return c.count(c.Client.EvalSha(ctx, sha, keys, args...))
}

func (c lossyClient) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.count(c.Client.Eval(ctx, script, keys, args...))
}

func (c lossyClient) count(cmd *redis.Cmd) *redis.Cmd {
	if res, err := cmd.Slice(); err == nil && len(res) > 0 {
		if n, ok := res[0].(int64); ok && n == 0 {
			c.refused.Add(1)
		}
	}
	return cmd
}

// switchClient fails every script call while down is set, like a node that
// cannot be reached.
type switchClient struct {
	Client
	down *atomic.Bool
}

var errInjected = errors.New("injected failure")

func (c switchClient) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if c.down.Load() {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(errInjected)
		return cmd
	}
	return c.Client.EvalSha(ctx, sha, keys, args...)
}

func (c switchClient) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	if c.down.Load() {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(errInjected)
		return cmd
	}
	return c.Client.Eval(ctx, script, keys, args...)
}

// campaign runs Campaign with a deadline and fails the test on error.
func campaign(t *testing.T, c election.Candidacy, timeout time.Duration) election.Term {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	term, err := c.Campaign(ctx)
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	return term
}

func candidate(t *testing.T, b *Backend) election.Candidacy {
	t.Helper()
	c, v, err := b.Candidate(t.Context())
	if err != nil {
		t.Fatalf("Candidate: %v", err)
	}
	if !v.IsZero() {
		t.Fatalf("Candidate validity = %+v, want zero: Redis holds nothing before winning", v)
	}
	return c
}

// campaignAsync runs Campaign in a goroutine; the result arrives on the
// returned channel. The goroutine ends when ctx does.
type outcome struct {
	term election.Term
	err  error
	at   time.Time
}

func campaignAsync(ctx context.Context, c election.Candidacy) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		term, err := c.Campaign(ctx)
		ch <- outcome{term, err, time.Now()}
	}()
	return ch
}

// eventually waits until cond holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for %s", what)
		}
	}
}

// subscribers returns how many clients listen on the election's channel.
func subscribers(t *testing.T, c *redis.Client, channel string) int64 {
	t.Helper()
	n, err := c.PubSubNumSub(t.Context(), channel).Result()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	return n[channel]
}
