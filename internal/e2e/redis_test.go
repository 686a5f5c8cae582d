package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

func redisArgs(addrs []string, extra ...string) []string {
	return append([]string{"--backend", "redis", "--election", "e2e", "--ttl", ttlFlag,
		"--redis-addr", strings.Join(addrs, ",")}, extra...)
}

func startRedisN(t *testing.T, addrs []string, ids ...string) []*sidecartest.Process {
	t.Helper()
	var ps []*sidecartest.Process
	for _, id := range ids {
		ps = append(ps, sidecartest.Start(t, bin, sidecartest.Options{ID: id, Args: redisArgs(addrs)}))
	}
	return ps
}

func without(ps []*sidecartest.Process, gone *sidecartest.Process) []*sidecartest.Process {
	var out []*sidecartest.Process
	for _, p := range ps {
		if p != gone {
			out = append(out, p)
		}
	}
	return out
}

func TestRedisHandoverAndFailover(t *testing.T) {
	srv := redistest.Start(t)
	ps := startRedisN(t, []string{srv.Addr()}, "a", "b", "c")
	leader, first := agree(t, ps)
	if first.Backend != "redis" || !strings.Contains(first.Caveats, "wall clock") {
		t.Errorf("backend %q, caveats %q", first.Backend, first.Caveats)
	}
	code, body, err := leader.Get(t.Context(), "/")
	if err != nil || code != http.StatusOK || string(body) != `{"name":"`+leader.ID+`"}` {
		t.Errorf("GET / = %d %q %v", code, body, err)
	}

	start := time.Now()
	leader.Signal(syscall.SIGTERM)
	successor(t, ps, leader)
	took := time.Since(start)
	if code := leader.Wait(generous); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	live := without(ps, leader)
	next, second := agree(t, live)
	if took >= ttl {
		t.Errorf("graceful handover took %v, not faster than the %v TTL", took, ttl)
	} else {
		t.Logf("graceful handover: %v", took)
	}
	if second.FencingToken <= first.FencingToken {
		t.Errorf("token %d after handover, want more than %d", second.FencingToken, first.FencingToken)
	}

	start = time.Now()
	next.Signal(syscall.SIGKILL)
	next.Wait(generous)
	_, third := agree(t, without(live, next))
	t.Logf("crash failover: %v (TTL %v)", time.Since(start), ttl)
	if third.FencingToken <= second.FencingToken {
		t.Errorf("token %d after failover, want more than %d", third.FencingToken, second.FencingToken)
	}
	assertNoOverlap(t, ps)
}

// Redis restarted empty loses the lock and the fencing counter; the
// sidecars step down, exactly one leads again, and tokens keep rising
// because candidates carry the highest token they have seen.
func TestRedisRestartedEmpty(t *testing.T) {
	srv := redistest.Start(t)
	ps := startRedisN(t, []string{srv.Addr()}, "a", "b")
	leader, first := agree(t, ps)

	srv.Stop()
	leader.WaitStatus("stepping down with Redis gone", generous, func(s sidecartest.Status) bool { return !s.IsLeader })
	for _, p := range ps {
		if code, _, _ := p.Get(t.Context(), "/leader"); code != http.StatusServiceUnavailable {
			t.Errorf("%s claims leadership with Redis down", p.ID)
		}
	}
	srv.Restart()
	_, again := agree(t, ps)
	if again.FencingToken <= first.FencingToken {
		t.Errorf("token %d after Redis restarted empty, want more than %d", again.FencingToken, first.FencingToken)
	}
	assertNoOverlap(t, ps)
}

func TestRedlockToleratesAMinorityAndStopsWithoutAMajority(t *testing.T) {
	servers := redistest.StartN(t, 3)
	ps := startRedisN(t, redistest.Addrs(servers), "a", "b")
	leader, first := agree(t, ps)

	servers[0].Stop()
	// With two of three masters a leader keeps being elected and renewed.
	leader.WaitStatus("a leader renewing on 2 of 3", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	leader.Signal(syscall.SIGTERM)
	leader.Wait(generous)
	live := without(ps, leader)
	_, second := agree(t, live)
	if second.FencingToken <= first.FencingToken {
		t.Errorf("token %d, want more than %d", second.FencingToken, first.FencingToken)
	}

	servers[1].Stop()
	live[0].WaitStatus("no leader without a majority", generous, func(s sidecartest.Status) bool { return !s.IsLeader })
	assertNoOverlap(t, ps)
}

func TestRedisWrongPasswordIsReported(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword("right"))
	p := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: redisArgs([]string{srv.Addr()}),
		Env: []string{"LEADER_ELECTOR_REDIS_PASSWORD=wrong"}})
	deadline := time.Now().Add(generous)
	for !strings.Contains(p.Log(), "WRONGPASS") && !strings.Contains(p.Log(), "authentication") {
		if time.Now().After(deadline) {
			t.Fatalf("no authentication error logged:\n%s", p.Log())
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
	if st, err := p.Status(t.Context()); err != nil || st.IsLeader || st.Ready {
		t.Errorf("with a wrong password: %+v, %v", st, err)
	}
	good := sidecartest.Start(t, bin, sidecartest.Options{ID: "b", Args: redisArgs([]string{srv.Addr()}),
		Env: []string{"LEADER_ELECTOR_REDIS_PASSWORD=right"}})
	good.WaitStatus("leadership with the right password", generous, func(s sidecartest.Status) bool { return s.IsLeader })
}

// The ACL user the README documents is enough, and nothing outside the prefix is needed.
func TestRedisACLUserLimitedToThePrefix(t *testing.T) {
	srv := redistest.Start(t, redistest.WithACL(
		"user default on nopass ~* &* +@all",
		"user elector on >secret resetkeys ~leader-elector:* resetchannels &leader-elector:* -@all "+
			"+eval +evalsha +subscribe +ping +get +set +pexpire +pttl +del +publish +exists +time +hgetall +hget +hset +hdel +hincrby +config|get",
	))
	ps := []*sidecartest.Process{}
	for _, id := range []string{"a", "b"} {
		ps = append(ps, sidecartest.Start(t, bin, sidecartest.Options{ID: id,
			Args: redisArgs([]string{srv.Addr()}, "--redis-username", "elector"),
			Env:  []string{"LEADER_ELECTOR_REDIS_PASSWORD=secret"}}))
	}
	leader, first := agree(t, ps)
	leader.Signal(syscall.SIGTERM)
	_, next := successor(t, ps, leader)
	if next.FencingToken <= first.FencingToken {
		t.Errorf("token %d after handover, want more than %d", next.FencingToken, first.FencingToken)
	}
}

// A user missing one command the election needs (here PUBLISH) makes the
// sidecar not ready, with the problem in /status and the command named in
// the log, and it never claims leadership. (It used to stay ready and leave
// its lock behind.)
func TestRedisMissingPermissionNotReady(t *testing.T) {
	srv := redistest.Start(t, redistest.WithACL(
		"user default on nopass ~* &* +@all",
		"user elector on >secret resetkeys ~leader-elector:* resetchannels &leader-elector:* -@all "+
			"+eval +evalsha +subscribe +ping +get +set +pexpire +pttl +del +exists +time +hgetall +hget +hset +hdel +hincrby +config|get",
	))
	p := sidecartest.Start(t, bin, sidecartest.Options{ID: "a",
		Args: redisArgs([]string{srv.Addr()}, "--redis-username", "elector"),
		Env:  []string{"LEADER_ELECTOR_REDIS_PASSWORD=secret"}})
	st := p.WaitStatus("the permission problem in /status", generous, func(s sidecartest.Status) bool {
		return s.Problem != ""
	})
	if st.Ready || st.IsLeader || st.Problem != "permission denied" {
		t.Errorf("status %+v, want not ready, not leader, problem \"permission denied\"", st)
	}
	waitLogged(t, p, "may not run publish")
}

// A master whose maxmemory-policy can evict the lock is refused: not
// ready, the problem in /status, the master and policy in the log.
func TestRedisEvictingMasterNotReady(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory-policy", "volatile-ttl"))
	p := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: redisArgs([]string{srv.Addr()})})
	st := p.WaitStatus("the eviction problem in /status", generous, func(s sidecartest.Status) bool {
		return s.Problem != ""
	})
	if st.Ready || st.IsLeader || st.Problem != "backend misconfigured" {
		t.Errorf("status %+v, want not ready, not leader, problem \"backend misconfigured\"", st)
	}
	waitLogged(t, p, `maxmemory-policy is \"volatile-ttl\"`)
	waitLogged(t, p, srv.Addr())
}

// waitLogged waits until p's log contains text (the log is written off the
// election's path, so it may trail the status).
func waitLogged(t *testing.T, p *sidecartest.Process, text string) {
	t.Helper()
	deadline := time.Now().Add(generous)
	for !strings.Contains(p.Log(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not contain %q:\n%s", text, p.Log())
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal("test ended")
		}
	}
}
