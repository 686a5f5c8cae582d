package redislock

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// aclUser is an ACL line for user "elector" with password "pw", limited
// to the default prefix, with the commands the package doc lists, less
// those in without.
func aclUser(without ...string) string {
	cmds := []string{"eval", "evalsha", "subscribe", "ping", "get", "set", "pexpire", "pttl", "del", "publish",
		"exists", "time", "hgetall", "hget", "hset", "hdel", "hincrby", "config|get"}
	line := "user elector on >pw resetkeys ~leader-elector:* resetchannels &leader-elector:* -@all"
	for _, c := range cmds {
		skip := false
		for _, w := range without {
			skip = skip || w == c
		}
		if !skip {
			line += " +" + c
		}
	}
	return line
}

// wantCandidateError checks that Candidate fails with target, naming
// every string in mention.
func wantCandidateError(t *testing.T, b *Backend, target error, mention ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, _, err := b.Candidate(ctx)
	if !errors.Is(err, target) {
		t.Fatalf("Candidate = %v, want %v", err, target)
	}
	for _, m := range mention {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("Candidate error %q does not mention %q", err, m)
		}
	}
	t.Logf("Candidate: %v", err)
}

// engineStatus runs an engine on b until its status satisfies cond, and
// returns that status.
func engineStatus(t *testing.T, b *Backend, cond func(election.Status) bool) election.Status {
	t.Helper()
	e, err := election.New(election.Config{Election: "test", Identity: "pod-a", TTL: b.ttl, Backend: b, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = e.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	var st election.Status
	eventually(t, 10*time.Second, "the engine's status", func() bool {
		st, _ = e.Status()
		return cond(st)
	})
	return st
}

// TestEvictingMasterRefused: a master whose maxmemory-policy can evict the
// lock is refused with one error naming it and its policy, and an engine
// on it is not ready and says why. (Before, the lock was evicted under
// memory pressure while the :since key survived, and a waiter took over
// while the holder still claimed.)
func TestEvictingMasterRefused(t *testing.T) {
	for _, policy := range []string{"volatile-ttl", "volatile-lru", "allkeys-lru", "allkeys-random"} {
		t.Run(policy, func(t *testing.T) {
			srv := redistest.Start(t, redistest.WithArgs("--maxmemory-policy", policy))
			b := newBackend(t, []*redistest.Server{srv}, "pod-a", 2*time.Second, nil)
			wantCandidateError(t, b, election.ErrMisconfigured, srv.Addr(), policy)
			if !errors.Is(func() error { _, _, err := b.Candidate(t.Context()); return err }(), ErrEvicting) {
				t.Error("the error is not ErrEvicting")
			}
			st := engineStatus(t, b, func(st election.Status) bool { return st.Problem != "" })
			if st.Ready || st.IsLeader || st.Problem != election.ProblemMisconfigured {
				t.Errorf("engine status %+v, want not ready with problem %q", st, election.ProblemMisconfigured)
			}
		})
	}
}

// TestRedlockOneEvictingMasterRefused: one evicting master of three is
// enough to refuse, by name.
func TestRedlockOneEvictingMasterRefused(t *testing.T) {
	servers := redistest.StartN(t, 2)
	evicting := redistest.Start(t, redistest.WithArgs("--maxmemory-policy", "allkeys-lfu"))
	servers = append(servers, evicting)
	b := newBackend(t, servers, "pod-a", 2*time.Second, nil)
	wantCandidateError(t, b, ErrEvicting, evicting.Addr(), "allkeys-lfu")
}

// TestPolicyCheckedOnReconnect: a master reconfigured to evict while a
// term runs is refused by the next candidacy; once its connection breaks
// (as on a restart or failover) the running term stops using it: the lock
// there is neither renewed nor taken back, and the term goes on with the
// other two.
func TestPolicyCheckedOnReconnect(t *testing.T) {
	const ttl = 2 * time.Second
	servers := redistest.StartN(t, 3)
	links := proxiesFor(t, servers)
	b := newBackendVia(t, servers, links, "pod-a", ttl)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)

	admin := newClient(t, servers[0].Addr())
	if err := admin.ConfigSet(t.Context(), "maxmemory-policy", "volatile-lru").Err(); err != nil {
		t.Fatal(err)
	}
	wantCandidateError(t, b, ErrEvicting, links[0].Addr(), "volatile-lru")

	links[0].Reset()
	links[0].Pass()
	renewFor(t, c, 3*ttl, ttl/4)
	if n := admin.Exists(t.Context(), "leader-elector:test").Val(); n != 0 {
		t.Fatal("the lock was renewed or taken back on a master that can evict it")
	}
}

// renewFor renews c every interval for d. The term must survive: the lock
// is never lost and the last renewal succeeds; a single renewal may fail
// on a loaded machine (a lock that outlived its TTL there is taken back).
func renewFor(t *testing.T, c election.Candidacy, d, interval time.Duration) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); pause(t, interval) {
		if _, err = c.Renew(t.Context()); errors.Is(err, election.ErrLost) {
			t.Fatalf("Renew: %v", err)
		} else if err != nil {
			t.Logf("Renew (transient): %v", err)
		}
	}
	if _, err = c.Renew(t.Context()); err != nil {
		t.Fatalf("last Renew: %v", err)
	}
}

// pause waits d, or fails the test if it ends first.
func pause(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-time.After(d):
	case <-t.Context().Done():
		t.Fatal("test ended")
	}
}

// TestPolicyUnreadable: a user that may read neither CONFIG GET nor INFO
// is refused, with the way out named, unless the operator vouches for the
// policy; a policy that is read and evicts is refused even then.
func TestPolicyUnreadable(t *testing.T) {
	srv := redistest.Start(t, redistest.WithACL("user default on nopass ~* &* +@all", aclUser("config|get")))
	o := Options{Addrs: []string{srv.Addr()}, Username: "elector", Password: "pw"}
	wantCandidateError(t, newFromOptions(t, o, "pod-a"), election.ErrDenied, srv.Addr(), "maxmemory-policy", "assume-noeviction")

	o.AssumeNoEviction = true
	exercise(t, newFromOptions(t, o, "pod-a"))

	// INFO is enough to read it.
	if err := newClient(t, srv.Addr()).Do(t.Context(), "ACL", "SETUSER", "elector", "+info").Err(); err != nil {
		t.Fatal(err)
	}
	if err := newClient(t, srv.Addr()).ConfigSet(t.Context(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	wantCandidateError(t, newFromOptions(t, o, "pod-a"), ErrEvicting, "allkeys-lru")
}

// TestMissingPermissionNamed: a user missing any one command the election
// needs is refused at start with the command named, and an engine on it is
// not ready. (Before, a user without +publish stayed ready.)
func TestMissingPermissionNamed(t *testing.T) {
	for _, cmd := range []string{"publish", "subscribe", "pexpire", "del", "time", "evalsha"} {
		t.Run(cmd, func(t *testing.T) {
			srv := redistest.Start(t, redistest.WithACL("user default on nopass ~* &* +@all", aclUser(cmd)))
			b := newFromOptions(t, Options{Addrs: []string{srv.Addr()}, Username: "elector", Password: "pw"}, "pod-a")
			wantCandidateError(t, b, election.ErrDenied, srv.Addr(), cmd)
			st := engineStatus(t, b, func(st election.Status) bool { return st.Problem != "" })
			if st.Ready || st.IsLeader || st.Problem != election.ProblemDenied {
				t.Errorf("engine status %+v, want not ready with problem %q", st, election.ProblemDenied)
			}
		})
	}
}

// TestScriptErrorLeavesNoLock: with the start-up check bypassed, a user
// missing +publish (which the commit announces with) must not leave the
// lock behind when a round fails on it. Before, the acquire script wrote
// the lock and then failed on PUBLISH, and the lock stayed for a TTL.
func TestScriptErrorLeavesNoLock(t *testing.T) {
	srv := redistest.Start(t, redistest.WithACL("user default on nopass ~* &* +@all", aclUser("publish")))
	b := newFromOptions(t, Options{Addrs: []string{srv.Addr()}, Username: "elector", Password: "pw"}, "pod-a")
	skipWarmUp(t, []*redistest.Server{srv})
	for i := range b.verified {
		b.verified[i].Store(time.Now().UnixNano())
	}
	c := &candidacy{b: b}
	a, err := c.attempt(t.Context())
	if err != nil {
		t.Fatalf("attempt: %v", err)
	}
	if a.won {
		t.Fatal("won a round whose commit the server refused")
	}
	if n := newClient(t, srv.Addr()).Exists(t.Context(), "leader-elector:test").Val(); n != 0 {
		t.Fatal("a failed round left the lock behind")
	}
}

// TestPolicyRecheckedWhileLeading: a policy changed at runtime, with no
// reconnect and no new candidacy, is noticed within the re-check interval:
// the term stops renewing its lock on that master, so the lock there is
// never one that eviction could take while a waiter counts on it.
func TestPolicyRecheckedWhileLeading(t *testing.T) {
	const ttl = 2 * time.Second
	servers := redistest.StartN(t, 3)
	b := newBackend(t, servers, "pod-a", ttl, nil)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)
	admin := newClient(t, servers[0].Addr())
	if err := admin.ConfigSet(t.Context(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	renewFor(t, c, recheckInterval(ttl)+2*ttl, ttl/4)
	if n := admin.Exists(t.Context(), "leader-elector:test").Val(); n != 0 {
		t.Fatal("the lock is still renewed on a master that can evict it")
	}
}
