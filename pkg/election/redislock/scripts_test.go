package redislock

import (
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
)

// TestScripts runs each Lua script against a real server, in the order a
// lock's life takes them.
func TestScripts(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv.Addr())
	ctx := t.Context()
	s := newScripts()
	const lock, counter, events, since = "p:e", "p:e:token", "p:e:events", "p:e:since"
	const line, next = "p:e:line", "p:e:next"

	sub := c.Subscribe(ctx, events)
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatalf("subscribe: %v", err)
	}
	// nextMessage returns the next payload published on events. Tests
	// publish a marker after an action that must not publish, so "nothing
	// was published" shows up as the marker arriving first.
	nextMessage := func() string {
		t.Helper()
		m, err := sub.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		msg, ok := m.(*redis.Message)
		if !ok {
			t.Fatalf("received %T, want a message", m)
		}
		return msg.Payload
	}
	marker := func() {
		t.Helper()
		if err := c.Publish(ctx, events, "marker").Err(); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	// acquire returns the script's numbers, and the holder it names.
	var holder string
	acquire := func(value string, seen int64) []int64 {
		t.Helper()
		r, err := s.acquire.Run(ctx, c, []string{lock, counter, since, line, next}, value, 60000, seen,
			"00000000000000000000000000000000", 0, "id", "0").Slice()
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		holder = ""
		var ints []int64
		for _, v := range r {
			switch v := v.(type) {
			case int64:
				ints = append(ints, v)
			case string:
				holder = v
			}
		}
		return ints
	}
	run := func(sc *redis.Script, keys []string, args ...any) int64 {
		t.Helper()
		n, err := sc.Run(ctx, c, keys, args...).Int64()
		if err != nil {
			t.Fatalf("script: %v", err)
		}
		return n
	}

	// A node with no record of the election grants nothing for one TTL.
	if got := acquire("a", 0); got[0] != 0 || got[2] <= 0 || got[2] > 60000 || got[3] != 1 {
		t.Fatalf("acquire on a fresh node = %v, want a refusal with the warm-up left", got)
	}
	if n, _ := c.Exists(ctx, lock).Result(); n != 0 {
		t.Fatal("a warming node took the lock")
	}
	// Pretend the node has held the election's state for longer than the TTL.
	if err := c.Set(ctx, since, 0, 0).Err(); err != nil {
		t.Fatal(err)
	}

	// Free key: taken, token 1 proposed; the counter is written, and the
	// acquisition announced, only by the commit (raise).
	if got, want := acquire("a", 0), []int64{1, 1}; !slices.Equal(got, want) {
		t.Fatalf("acquire free = %v, want %v", got, want)
	}
	if n, _ := c.Get(ctx, counter).Int64(); n != 0 {
		t.Fatalf("counter after acquire = %d, want 0 until the commit", n)
	}
	if n := run(s.raise, []string{counter, events, next, line}, 1, "", ""); n != 1 {
		t.Fatalf("commit of token 1 = %d, want 1", n)
	}
	if got := nextMessage(); got != "acquired" {
		t.Fatalf("message after commit = %q, want acquired", got)
	}
	if v, _ := c.Get(ctx, lock).Result(); v != "a" {
		t.Fatalf("lock value = %q, want a", v)
	}

	// Held key: refused with the counter and remaining TTL; nothing changes.
	got := acquire("b", 0)
	if len(got) != 4 || got[0] != 0 || got[1] != 1 || got[2] <= 0 || got[2] > 60000 || got[3] != 0 || holder != "a" {
		t.Fatalf("acquire held = %v %q, want [0 1 0<pttl<=60000 0] a", got, holder)
	}
	marker()
	if got := nextMessage(); got != "marker" {
		t.Fatalf("refused acquire published %q", got)
	}

	// The holder retrying its own acquire (a lost reply) keeps the lock.
	if got, want := acquire("a", 0), []int64{1, 2}; !slices.Equal(got, want) {
		t.Fatalf("repeated acquire = %v, want %v", got, want)
	}

	// Renew: only the holder's value extends the lock, and it raises the
	// counter to the term's token.
	if err := c.PExpire(ctx, lock, 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if n := run(s.renew, []string{lock, counter, since, next}, "b", 60000, 3, "1"); n != 0 {
		t.Fatalf("renew foreign = %d, want 0", n)
	}
	// Counters only grow, so even a foreign renew raises it to its token.
	if n, _ := c.Get(ctx, counter).Int64(); n != 3 {
		t.Fatalf("counter after foreign renew with token 3 = %d, want 3", n)
	}
	if ttl := c.PTTL(ctx, lock).Val(); ttl > 5*time.Second {
		t.Fatalf("foreign renew extended the lock to %s", ttl)
	}
	if n := run(s.renew, []string{lock, counter, since, next}, "a", 60000, 7, "1"); n != 1 {
		t.Fatalf("renew own = %d, want 1", n)
	}
	if ttl := c.PTTL(ctx, lock).Val(); ttl <= 5*time.Second {
		t.Fatalf("own renew left the TTL at %s", ttl)
	}
	if n, _ := c.Get(ctx, counter).Int64(); n != 7 {
		t.Fatalf("counter after renew with token 7 = %d, want 7", n)
	}

	// Release: a foreign value neither deletes nor publishes.
	if n := run(s.release, []string{lock, events, line}, "b", "1", ""); n != 0 {
		t.Fatalf("release foreign = %d, want 0", n)
	}
	marker()
	if got := nextMessage(); got != "marker" {
		t.Fatalf("refused release published %q", got)
	}
	if n := run(s.release, []string{lock, events, line}, "a", "1", ""); n != 1 {
		t.Fatalf("release own = %d, want 1", n)
	}
	if got := nextMessage(); got != "released" {
		t.Fatalf("message after release = %q, want released", got)
	}
	if n := c.Exists(ctx, lock).Val(); n != 0 {
		t.Fatal("released lock still exists")
	}
	if n := run(s.renew, []string{lock, counter, since, next}, "a", 60000, 1, "0"); n != 0 {
		t.Fatalf("renew after release, not taking back = %d, want 0", n)
	}
	// Taking back a missing lock (a node that restarted empty) is allowed
	// once the node's warm-up has passed, which it has here.
	if n := run(s.renew, []string{lock, counter, since, next}, "a", 60000, 1, "1"); n != 2 {
		t.Fatalf("renew of a missing lock after the warm-up = %d, want 2 (taken back)", n)
	}
	if v := c.Get(ctx, lock).Val(); v != "a" {
		t.Fatalf("lock value after taking back = %q, want a", v)
	}
	// A round that never led withdraws without waking anyone.
	if n := run(s.release, []string{lock, events, line}, "a", "0", ""); n != 1 {
		t.Fatalf("silent release own = %d, want 1", n)
	}
	marker()
	if got := nextMessage(); got != "marker" {
		t.Fatalf("silent release published %q", got)
	}

	// Proposals increase, and never fall below what the client has seen.
	if got, want := acquire("c", 0), []int64{1, 8}; !slices.Equal(got, want) {
		t.Fatalf("acquire after release = %v, want %v", got, want)
	}
	run(s.release, []string{lock, events, line}, "c", "1", "")
	if got, want := acquire("d", 20), []int64{1, 21}; !slices.Equal(got, want) {
		t.Fatalf("acquire with seen 20 = %v, want %v", got, want)
	}

	// Raise only ever raises; read reports value, counter and TTL.
	if n := run(s.raise, []string{counter, events, next, line}, 5, "", ""); n != 7 {
		t.Fatalf("raise to 5 = %d, want 7 (unchanged)", n)
	}
	if n := run(s.raise, []string{counter, events, next, line}, 30, "", ""); n != 30 {
		t.Fatalf("raise to 30 = %d, want 30", n)
	}
	r, err := s.read.Run(ctx, c, []string{lock, counter}).Slice()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(r) != 3 || r[0] != "d" || r[1] != int64(30) || r[2].(int64) <= 0 {
		t.Fatalf("read = %v, want [d 30 pttl>0]", r)
	}
	run(s.release, []string{lock, events, line}, "d", "1", "")
	r, err = s.read.Run(ctx, c, []string{lock, counter}).Slice()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(r) != 3 || r[0] != "" || r[1] != int64(30) || r[2] != int64(-2) {
		t.Fatalf("read free = %v, want ['' 30 -2]", r)
	}
}

func TestValueRoundTrip(t *testing.T) {
	for _, id := range []string{"pod-0", "ünïcode", `quote" and \x00 nul`, "a\x00b"} {
		v, err := newValue(id, "0123456789abcdef0123456789abcdef")
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseValue(v)
		if err != nil || got != id {
			t.Fatalf("parseValue(newValue(%q)) = %q, %v", id, got, err)
		}
		w, _ := newValue(id, "0123456789abcdef0123456789abcdef")
		if v == w {
			t.Fatalf("two acquisitions share the value %q", v)
		}
	}
	for _, bad := range []string{"", "plain", `{"id":"x"}`, `{"nonce":"y"}`, "{"} {
		if _, err := parseValue(bad); err == nil {
			t.Errorf("parseValue(%q) succeeded, want an error", bad)
		}
	}
}

func FuzzParseValue(f *testing.F) {
	f.Add(`{"id":"a","nonce":"00"}`)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseValue(s)
		if err == nil && id == "" {
			t.Fatalf("parseValue(%q) accepted an empty identity", s)
		}
	})
}

// A node that lost its data must not grant a lock while one it granted
// before could still be valid: it waits one TTL on its own clock.
func TestFreshNodeWarmsUp(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 2 * time.Second
	a := newBackendWarm(t, []*redistest.Server{srv}, "a", ttl)
	ca, _, err := a.Candidate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := ca.Campaign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < ttl-100*time.Millisecond {
		t.Fatalf("a fresh node granted the lock after %v, before one TTL (%v)", took, ttl)
	}

	// The node restarts empty while a still believes it leads: the next
	// candidate must wait out a's lock.
	srv.Restart()
	b := newBackendWarm(t, []*redistest.Server{srv}, "b", ttl)
	cb, _, err := b.Candidate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if _, err := cb.Campaign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(restarted); took < ttl-100*time.Millisecond {
		t.Fatalf("a restarted node granted a new lock after %v, before one TTL (%v)", took, ttl)
	}
}
