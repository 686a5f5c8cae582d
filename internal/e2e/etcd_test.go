// Package e2e runs the sidecar binary as real processes against real
// backends and checks what its users see.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
	"github.com/leader-elector/leader-elector/pkg/history"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sidecar-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = sidecartest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	ttl     = 2 * time.Second
	ttlFlag = "2s"
	// generous is the bound for anything that should take well under a second.
	generous = 20 * time.Second
)

func etcdArgs(endpoints []string, extra ...string) []string {
	return append([]string{"--backend", "etcd", "--election", "e2e", "--ttl", ttlFlag,
		"--etcd-endpoints", strings.Join(endpoints, ",")}, extra...)
}

func startN(t *testing.T, endpoints []string, ids ...string) []*sidecartest.Process {
	t.Helper()
	var ps []*sidecartest.Process
	for _, id := range ids {
		ps = append(ps, sidecartest.Start(t, bin, sidecartest.Options{ID: id, Args: etcdArgs(endpoints)}))
	}
	return ps
}

// agree waits until every live process names the same leader, exactly one
// of them claims it, and returns that one.
func agree(t *testing.T, ps []*sidecartest.Process) (*sidecartest.Process, sidecartest.Status) {
	t.Helper()
	deadline := time.Now().Add(generous)
	for time.Now().Before(deadline) {
		leader := sidecartest.Leader(t, ps)
		if leader != nil {
			ls, err := leader.Status(t.Context())
			if err == nil && ls.IsLeader {
				all := true
				for _, p := range ps {
					if p.Exited() {
						continue
					}
					s, err := p.Status(t.Context())
					if err != nil || s.Name != ls.Name || s.FencingToken != ls.FencingToken || !s.Ready {
						all = false
					}
				}
				if all {
					return leader, ls
				}
			}
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
	t.Fatal("the processes never agreed on one leader")
	return nil, sidecartest.Status{}
}

// successor polls until a process other than old claims leadership.
func successor(t *testing.T, ps []*sidecartest.Process, old *sidecartest.Process) (*sidecartest.Process, sidecartest.Status) {
	t.Helper()
	deadline := time.Now().Add(generous)
	for time.Now().Before(deadline) {
		if p := sidecartest.Leader(t, ps); p != nil && p != old {
			if s, err := p.Status(t.Context()); err == nil && s.IsLeader {
				return p, s
			}
		}
	}
	t.Fatalf("no successor to %s", old.ID)
	return nil, sidecartest.Status{}
}

func TestOneLeaderAmongThreeAndAllAgree(t *testing.T) {
	cluster := etcdtest.Single(t)
	ps := startN(t, cluster.ClientURLs(), "a", "b", "c")
	leader, st := agree(t, ps)
	if st.Name != leader.ID || st.Identity != leader.ID || st.Backend != "etcd" || st.Election != "e2e" ||
		st.TTLSeconds != 2 || st.FencingToken <= 0 || st.Since == "" || st.Caveats != "" {
		t.Errorf("leader status %+v", st)
	}
	for _, p := range ps {
		// The contrib sidecar's contract, byte for byte.
		code, body, err := p.Get(t.Context(), "/")
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s GET /: %d %v", p.ID, code, err)
		}
		if want := `{"name":"` + leader.ID + `"}`; string(body) != want {
			t.Errorf("%s GET / = %q, want %q", p.ID, body, want)
		}
		wantLeader, wantFollower := http.StatusServiceUnavailable, http.StatusOK
		if p == leader {
			wantLeader, wantFollower = http.StatusOK, http.StatusServiceUnavailable
		}
		if code, _, _ := p.Get(t.Context(), "/leader"); code != wantLeader {
			t.Errorf("%s GET /leader = %d, want %d", p.ID, code, wantLeader)
		}
		if code, _, _ := p.Get(t.Context(), "/follower"); code != wantFollower {
			t.Errorf("%s GET /follower = %d, want %d", p.ID, code, wantFollower)
		}
		if code, _, _ := p.Get(t.Context(), "/readyz"); code != http.StatusOK {
			t.Errorf("%s GET /readyz = %d", p.ID, code)
		}
		if code, _, _ := p.Get(t.Context(), "/healthz"); code != http.StatusOK {
			t.Errorf("%s GET /healthz = %d", p.ID, code)
		}
	}
	_, metrics, err := leader.Get(t.Context(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"leader_elector_is_leader 1", "leader_elector_build_info{"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("leader's /metrics lacks %q", want)
		}
	}
}

func TestGracefulHandoverOnSIGTERM(t *testing.T) {
	cluster := etcdtest.Single(t)
	ps := startN(t, cluster.ClientURLs(), "a", "b", "c")
	leader, first := agree(t, ps)

	start := time.Now()
	leader.Signal(syscall.SIGTERM)
	_, next := successor(t, ps, leader)
	took := time.Since(start)
	if code := leader.Wait(generous); code != 0 {
		t.Errorf("SIGTERM exit code %d, want 0", code)
	}
	// A successor that waited for the lease to expire would take over 2 s.
	if took >= ttl {
		t.Errorf("graceful handover took %v, not faster than the TTL", took)
	}
	if next.FencingToken <= first.FencingToken {
		t.Errorf("token %d after handover, want more than %d", next.FencingToken, first.FencingToken)
	}
	h := leader.ReadHistory()
	if last := h[len(h)-1]; last.IsLeader {
		t.Errorf("the resigned leader's last recorded status claims leadership: %+v", last)
	}
	t.Logf("graceful handover: %v", took)
}

func TestCrashFailover(t *testing.T) {
	cluster := etcdtest.Single(t)
	ps := startN(t, cluster.ClientURLs(), "a", "b", "c")
	leader, first := agree(t, ps)

	start := time.Now()
	leader.Signal(syscall.SIGKILL)
	leader.Wait(generous)
	var survivors []*sidecartest.Process
	for _, p := range ps {
		if p != leader {
			survivors = append(survivors, p)
		}
	}
	next, st := agree(t, survivors)
	took := time.Since(start)
	if took > ttl+10*time.Second {
		t.Errorf("failover took %v", took)
	}
	if st.FencingToken <= first.FencingToken || next == leader {
		t.Errorf("token %d after failover, want more than %d", st.FencingToken, first.FencingToken)
	}
	t.Logf("crash failover: %v (TTL %v)", took, ttl)
}

func TestEnvironmentConfiguresEveryFlag(t *testing.T) {
	cluster := etcdtest.Single(t)
	p := sidecartest.Start(t, bin, sidecartest.Options{ID: "env", Env: []string{
		"LEADER_ELECTOR_ELECTION=from-env",
		"LEADER_ELECTOR_TTL=3s",
		"LEADER_ELECTOR_ETCD_ENDPOINTS=" + strings.Join(cluster.ClientURLs(), ","),
	}})
	st := p.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	if st.Election != "from-env" || st.TTLSeconds != 3 {
		t.Errorf("status %+v, want election from-env with a 3 s TTL", st)
	}
}

func TestResignMovesLeadership(t *testing.T) {
	cluster := etcdtest.Single(t)
	cs := startControlled(t, cluster.ClientURLs(), "a", "b")
	leader, first := agree(t, processes(cs))
	var socket string
	for _, c := range cs {
		if c.Process == leader {
			socket = c.socket
		}
	}
	bearer := map[string]string{"Authorization": "Bearer " + e2eToken}
	if code, body := send(t, request{viaSocket: socket, url: "http://localhost/resign", header: bearer}); code != http.StatusOK {
		t.Fatalf("POST /resign on the control socket = %d %v", code, body)
	}
	next, st := agree(t, processes(cs))
	if next == leader || st.FencingToken <= first.FencingToken {
		t.Errorf("after resign the leader is %s with token %d (was %s, %d)", next.ID, st.FencingToken, leader.ID, first.FencingToken)
	}
	// A follower has nothing to resign.
	if code, _ := send(t, request{viaSocket: socket, url: "http://localhost/resign", header: bearer}); code != http.StatusConflict {
		t.Errorf("POST /resign on a follower = %d, want 409", code)
	}
}

func TestWatchStreamsEveryChange(t *testing.T) {
	cluster := etcdtest.Single(t)
	a := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: etcdArgs(cluster.ClientURLs())})
	a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	b := sidecartest.Start(t, bin, sidecartest.Options{ID: "b", Args: etcdArgs(cluster.ClientURLs())})
	b.WaitStatus("seeing a", generous, func(s sidecartest.Status) bool { return s.Name == "a" && s.Ready })

	ctx, cancel := context.WithTimeout(t.Context(), generous)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+"/watch", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan sidecartest.Status, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var s sidecartest.Status
				if json.Unmarshal([]byte(data), &s) == nil {
					events <- s
				}
			}
		}
	}()
	first := <-events
	if first.Name != "a" || first.IsLeader {
		t.Fatalf("first event %+v, want a as leader", first)
	}
	a.Signal(syscall.SIGTERM)
	for s := range events {
		if s.IsLeader && s.Name == "b" {
			return
		}
	}
	t.Fatal("the stream ended without reporting b as leader")
}

// Leadership intervals recorded by several processes never overlap.
func assertNoOverlap(t *testing.T, ps []*sidecartest.Process) {
	t.Helper()
	var all []history.Interval
	for _, p := range ps {
		all = append(all, p.Intervals()...)
	}
	for i, x := range all {
		for _, y := range all[i+1:] {
			xEnd, yEnd := x.End, y.End
			if xEnd == 0 {
				xEnd = 1<<63 - 1
			}
			if yEnd == 0 {
				yEnd = 1<<63 - 1
			}
			if x.Start < yEnd && y.Start < xEnd {
				t.Errorf("leadership overlap: %s %+v and %s %+v", x.Identity, x, y.Identity, y)
			}
		}
	}
}

func TestHistoriesShowNoOverlapAcrossHandovers(t *testing.T) {
	cluster := etcdtest.Single(t)
	ps := startN(t, cluster.ClientURLs(), "a", "b", "c")
	live := ps
	var tokens []int64
	for range 2 {
		leader, st := agree(t, live)
		tokens = append(tokens, st.FencingToken)
		leader.Signal(syscall.SIGTERM)
		leader.Wait(generous)
		var rest []*sidecartest.Process
		for _, p := range live {
			if p != leader {
				rest = append(rest, p)
			}
		}
		live = rest
	}
	_, st := agree(t, live)
	tokens = append(tokens, st.FencingToken)
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("tokens did not increase: %v", tokens)
		}
	}
	assertNoOverlap(t, ps)
}

// A leader cut off from etcd steps down at its own deadline, before its
// lease can expire, so it never overlaps its successor; when the network
// heals it rejoins as a follower without a restart.
func TestBlackholedLeaderStepsDownBeforeSuccessorWins(t *testing.T) {
	cluster := etcdtest.Single(t)
	proxy := tcpproxy.Start(t, strings.TrimPrefix(cluster.ClientURLs()[0], "http://"))
	a := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: etcdArgs([]string{proxy.Addr()}, "--etcd-dial-timeout", "1s")})
	first := a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	ps := append([]*sidecartest.Process{a}, startN(t, cluster.ClientURLs(), "b", "c")...)
	agree(t, ps)

	proxy.Blackhole()
	cut := time.Now()
	a.WaitStatus("stepping down", generous, func(s sidecartest.Status) bool { return !s.IsLeader })
	steppedDown := time.Since(cut)
	next, st := agree(t, ps[1:])
	if st.FencingToken <= first.FencingToken {
		t.Errorf("successor token %d, want more than %d", st.FencingToken, first.FencingToken)
	}
	if steppedDown >= ttl {
		t.Errorf("the cut-off leader stepped down %v after the cut, not within its %v TTL", steppedDown, ttl)
	}
	assertNoOverlap(t, ps)

	proxy.Pass()
	a.WaitStatus("rejoining as a follower", generous, func(s sidecartest.Status) bool {
		return !s.IsLeader && s.Ready && s.Name == next.ID
	})
	t.Logf("stepped down %v after the cut; %s took over", steppedDown, next.ID)
}

func TestEtcdDownAtStartThenUp(t *testing.T) {
	cluster := etcdtest.Single(t)
	proxy := tcpproxy.Start(t, strings.TrimPrefix(cluster.ClientURLs()[0], "http://"))
	proxy.Reset()
	a := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: etcdArgs([]string{proxy.Addr()}, "--etcd-dial-timeout", "1s")})

	// It keeps running, says it is not leader and not ready, and retries.
	deadline := time.Now().Add(generous)
	for !a.Logged("backend call failed") {
		if time.Now().After(deadline) || a.Exited() {
			t.Fatal("no failed backend call was logged")
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
	st, err := a.Status(t.Context())
	if err != nil || st.IsLeader || st.Ready {
		t.Fatalf("with etcd down: status %+v, %v", st, err)
	}
	for path, want := range map[string]int{"/readyz": 503, "/healthz": 200, "/leader": 503} {
		if code, _, _ := a.Get(t.Context(), path); code != want {
			t.Errorf("GET %s = %d with etcd down, want %d", path, code, want)
		}
	}

	proxy.Pass()
	a.WaitStatus("leadership once etcd answers", generous, func(s sidecartest.Status) bool { return s.IsLeader && s.Ready })
}

// A lock-service outage must not take the application out of service: the
// sidecar's own health (/healthz, which the chart's probes use in every
// readiness mode) stays 200 on every replica while etcd is unreachable for
// several TTLs, /readyz and /leader report the outage, nobody claims to
// lead, and one leader is back once etcd answers.
func TestEtcdOutageKeepsSidecarsHealthy(t *testing.T) {
	cluster := etcdtest.Single(t)
	proxy := tcpproxy.Start(t, strings.TrimPrefix(cluster.ClientURLs()[0], "http://"))
	var ps []*sidecartest.Process
	for _, id := range []string{"a", "b", "c"} {
		ps = append(ps, sidecartest.Start(t, bin, sidecartest.Options{ID: id,
			Args: etcdArgs([]string{proxy.Addr()}, "--etcd-dial-timeout", "1s")}))
	}
	agree(t, ps)

	proxy.Blackhole()
	outage := time.Now()
	for time.Since(outage) < 4*ttl {
		for _, p := range ps {
			if code, body, err := p.Get(t.Context(), "/healthz"); err != nil || code != 200 {
				t.Fatalf("%s: GET /healthz = %d %q, %v %v into the outage; want 200", p.ID, code, body, err, time.Since(outage))
			}
		}
		tick := time.NewTimer(50 * time.Millisecond)
		<-tick.C
	}
	for _, p := range ps {
		p.WaitStatus("not ready, no leader claimed", generous, func(s sidecartest.Status) bool {
			return !s.IsLeader && !s.Ready && s.Name == ""
		})
		if code, _, _ := p.Get(t.Context(), "/readyz"); code != 503 {
			t.Errorf("%s: GET /readyz = %d during the outage, want 503", p.ID, code)
		}
	}
	proxy.Pass()
	agree(t, ps)
	assertNoOverlap(t, ps)
}

// A sidecar whose log nobody reads (its stderr pipe full) still steps down
// at its deadline, and every consumer hears of it: its status, /metrics and
// its history. Before logging stopped waiting for stderr, the loop hung in a
// log write and /metrics (and /watch, and the history) kept saying leader.
func TestStalledLogDoesNotDelayTheStepDown(t *testing.T) {
	cluster := etcdtest.Single(t)
	proxy := tcpproxy.Start(t, strings.TrimPrefix(cluster.ClientURLs()[0], "http://"))
	a := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: etcdArgs([]string{proxy.Addr()}, "--etcd-dial-timeout", "1s")})
	first := a.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	ps := append([]*sidecartest.Process{a}, startN(t, cluster.ClientURLs(), "b", "c")...)
	agree(t, ps)

	a.StallLog()
	if err := a.FillLog(); err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole()
	cut := time.Now()
	a.WaitStatus("stepping down", generous, func(s sidecartest.Status) bool { return !s.IsLeader })
	deadline := time.Now().Add(generous)
	for {
		_, body, err := a.Get(t.Context(), "/metrics")
		if err == nil && strings.Contains(string(body), "\nleader_elector_is_leader 0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics still says leader %v after the cut, with the log stalled", time.Since(cut))
		}
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
	}
	_, st := agree(t, ps[1:])
	if st.FencingToken <= first.FencingToken {
		t.Errorf("successor token %d, want more than %d", st.FencingToken, first.FencingToken)
	}
	assertNoOverlap(t, ps) // the history is written whatever the log does
	a.ResumeLog()
}
