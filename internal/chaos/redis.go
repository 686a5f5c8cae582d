package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
)

// The Redis faults: the configurations and partial failures of issue 11
// that used to break the lock, injected at random.
//
//   - redis-evict: a master's maxmemory-policy turns to one that evicts the
//     lock (volatile-ttl evicts the key with the shortest TTL first: the
//     lock), the sidecars' connections to it break (as on a failover or a
//     proxy restart), and after the backend's re-check interval the master
//     is filled past its maxmemory. The backend must refuse the master.
//   - redis-deny: the sidecars' user loses one command the scripts use. A
//     failing script must leave no lock behind and no term may overlap.
//   - redlock-link: one candidate's link to one Redlock master is delayed
//     or dropped, the interleavings that once reordered tokens.
//   - redlock-roll-restarts: every Redlock master is restarted empty, one
//     at a time, each after the previous one's warm-up and one renewal.
func redisKinds(backend string) []Kind {
	kinds := []Kind{RedisEvict, RedisDeny}
	if backend == BackendRedlock {
		kinds = append(kinds, RedlockLink, RedlockRollRestarts)
	}
	return kinds
}

// recheck is how long the Redis backend trusts a master's check (see
// redislock's checkNode); the evict fault waits it out before the memory
// pressure, since a policy changed at runtime is noticed only then.
func recheck(ttl time.Duration) time.Duration { return 2 * ttl }

// deniable are the commands redis-deny takes away, one per fault.
var deniable = []string{"publish", "pexpire", "set", "del", "time", "evalsha"}

func newRedisFault(rng *rand.Rand, f *Fault, ttl time.Duration) {
	switch f.Kind {
	case RedisEvict:
		f.Hold = between(rng, recheck(ttl)+ttl, recheck(ttl)+2*ttl)
	case RedisDeny:
		f.Hold = between(rng, 500*time.Millisecond, 2*ttl)
	case RedlockLink:
		f.Hold = between(rng, 500*time.Millisecond, ttl+2*time.Second)
		if rng.IntN(2) == 0 {
			f.Delay = between(rng, 50*time.Millisecond, ttl/2)
		}
	case RedlockRollRestarts:
		f.Hold = 0 // the restarts take their own time
	}
}

// admin returns a client for srv, closed when the trial ends.
func (tr *trial) admin(srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DisableIdentity: true})
	tr.t.Cleanup(func() { _ = c.Close() })
	return c
}

// applied records whether a Redis admin command of a fault worked. It
// fails only when another fault has stopped that server (a redis-restart
// overlapping this fault): then the fault is recorded as skipped.
func (tr *trial) applied(err error, kind Kind, srv *redistest.Server) bool {
	if err != nil {
		tr.event(string(kind)+"-skipped", srv.Addr(), err.Error())
		return false
	}
	return true
}

// redisFault resolves a Redis fault; ok is false for other kinds.
func (tr *trial) redisFault(f Fault, at *targets) (inject, heal func()) {
	pick := f.Pick % len(tr.redis)
	srv := tr.redis[pick]
	ctx := context.Background()
	switch f.Kind {
	case RedisEvict:
		c := tr.admin(srv)
		undo := func() {
			_ = c.ConfigSet(ctx, "maxmemory", "0").Err()
			_ = c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err()
			keys, _ := c.Keys(ctx, "chaos-filler:*").Result()
			for _, k := range keys {
				_ = c.Del(ctx, k).Err()
			}
		}
		return func() {
				if !tr.applied(c.ConfigSet(ctx, "maxmemory-policy", "volatile-ttl").Err(), f.Kind, srv) {
					return
				}
				for _, s := range tr.slots {
					s.proxies[pick].Reset()
					s.proxies[pick].Pass()
				}
				tr.event("redis-evict-policy", srv.Addr(), "volatile-ttl")
				tr.redisHeals = append(tr.redisHeals, undo)
				wait(recheck(tr.ttl) + 500*time.Millisecond)
				tr.fill(c)
				tr.event("redis-memory-full", srv.Addr(), "")
			}, func() {
				undo()
				tr.event("redis-noeviction", srv.Addr(), "")
			}
	case RedisDeny:
		c := tr.admin(srv)
		cmd := deniable[(f.Pick/len(tr.redis))%len(deniable)]
		undo := func() { _ = c.Do(ctx, "ACL", "SETUSER", "default", "+@all").Err() }
		return func() {
				if !tr.applied(c.Do(ctx, "ACL", "SETUSER", "default", "-"+cmd).Err(), f.Kind, srv) {
					return
				}
				tr.redisHeals = append(tr.redisHeals, undo)
				tr.event("redis-deny", srv.Addr(), cmd)
			}, func() {
				undo()
				tr.event("redis-allow", srv.Addr(), cmd)
			}
	case RedlockLink:
		s := at.link(f)
		p := s.proxies[pick]
		return func() {
				what := "drop"
				if f.Delay > 0 {
					p.Delay(f.Delay)
					what = "delay " + f.Delay.Round(time.Millisecond).String()
				} else {
					p.Blackhole()
				}
				tr.event("redlock-link", fmt.Sprintf("%s->%s", s.id, srv.Addr()), what)
			}, func() {
				p.Pass()
				tr.event("pass", fmt.Sprintf("%s->%s", s.id, srv.Addr()), "")
			}
	case RedlockRollRestarts:
		// One master's warm-up (one TTL) plus one renewal (TTL/3) and the
		// engine's margin, so the leader has taken its lock back on the
		// last master before the next one goes.
		gap := tr.ttl + tr.ttl/3 + 500*time.Millisecond
		return func() {
			for i := range tr.redis {
				srv := tr.redis[(pick+i)%len(tr.redis)]
				if i > 0 {
					wait(gap)
				}
				tr.restartRedis(srv)
			}
		}, func() {}
	}
	tr.t.Fatalf("redisFault: %s is not a Redis fault", f.Kind)
	return nil, nil
}

// fill sets maxmemory a little above what c's server uses and writes keys
// with a long TTL until the server evicts, so the volatile-ttl policy
// evicts the short-lived lock first.
func (tr *trial) fill(c *redis.Client) error {
	ctx := context.Background()
	var used int64
	if _, err := fmt.Sscan(stat(c, "memory", "used_memory"), &used); err != nil {
		return fmt.Errorf("INFO memory used_memory: %w", err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", fmt.Sprint(used+256<<10)).Err(); err != nil {
		return err
	}
	value := strings.Repeat("x", 4<<10)
	for i := range 200 {
		// Past maxmemory a write evicts first; an error means nothing is
		// left to evict, which is pressure enough.
		if c.Set(ctx, fmt.Sprintf("chaos-filler:%d", i), value, time.Hour).Err() != nil {
			return nil
		}
	}
	return nil
}

// stat returns one field of c's INFO section, or "?".
func stat(c *redis.Client, section, field string) string {
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return "?"
}

// healRedis undoes the Redis faults still in place.
func (tr *trial) healRedis() {
	for _, undo := range tr.redisHeals {
		undo()
	}
	tr.redisHeals = nil
}

// wait sleeps for d: holding a fault for its time is the experiment.
func wait(d time.Duration) {
	t := time.NewTimer(d)
	<-t.C
}
