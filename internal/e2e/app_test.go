package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
	"github.com/leader-elector/leader-elector/internal/testutil/tcpproxy"
)

// Application-aware leadership against real sidecar processes: the health
// gate, with a real HTTP application (an in-process server on loopback)
// that the test makes unhealthy and healthy again.

// app is the application a sidecar guards.
type app struct {
	srv  *httptest.Server
	code atomic.Int32
}

func newApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	a.code.Store(http.StatusOK)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(a.code.Load()))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) set(healthy bool) {
	if healthy {
		a.code.Store(http.StatusOK)
	} else {
		a.code.Store(http.StatusServiceUnavailable)
	}
}

// healthArgs checks often, with a timeout generous enough that a busy
// machine does not fail a healthy application.
func healthArgs(a *app) []string {
	return []string{"--app-health-url", a.srv.URL + "/healthz", "--app-health-interval", "100ms",
		"--app-health-timeout", "100ms", "--app-health-failures", "3", "--app-health-successes", "2"}
}

// backends returns, for each real backend, the flags that select it.
func backends() []struct {
	name string
	args func(t *testing.T) []string
} {
	return []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"etcd", func(t *testing.T) []string {
			return etcdArgs(etcdtest.Single(t).ClientURLs())
		}},
		{"redis", func(t *testing.T) []string {
			return redisArgs([]string{redistest.Start(t).Addr()})
		}},
	}
}

func metric(t *testing.T, p *sidecartest.Process, series string) float64 {
	t.Helper()
	v, ok := p.Metric(t.Context(), series)
	if !ok {
		t.Fatalf("%s: no metric %s", p.ID, series)
	}
	return v
}

// readStatusFile reads path until stop is closed and fails the test on any
// document that does not parse (a torn write). It returns how many reads
// parsed.
func readStatusFile(t *testing.T, path string, stop <-chan struct{}) <-chan int {
	n := make(chan int, 1)
	go func() {
		reads := 0
		defer func() { n <- reads }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				continue // not written yet
			}
			var st sidecartest.Status
			if err := json.Unmarshal(b, &st); err != nil {
				t.Errorf("torn status file %s: %v: %q", path, err, b)
				return
			}
			reads++
		}
	}()
	return n
}

func TestUnhealthyLeaderHandsOverToAHealthyStandby(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			args := be.args(t)
			apps := map[string]*app{"a": newApp(t), "b": newApp(t)}
			files := map[string]string{}
			var ps []*sidecartest.Process
			for _, id := range []string{"a", "b"} {
				files[id] = filepath.Join(t.TempDir(), "status.json")
				ps = append(ps, sidecartest.Start(t, bin, sidecartest.Options{ID: id,
					Args: append(append(append([]string(nil), args...), healthArgs(apps[id])...), "--status-file", files[id])}))
			}
			leader, st := agree(t, ps)
			if st.AppHealth != "healthy" || st.State != "leading" {
				t.Errorf("leader status %+v", st)
			}
			stop := make(chan struct{})
			reads := readStatusFile(t, files[leader.ID], stop)

			apps[leader.ID].set(false)
			next, nst := successor(t, ps, leader)
			if nst.AppHealth != "healthy" {
				t.Errorf("successor status %+v", nst)
			}
			old := leader.WaitStatus("standing aside", generous, func(s sidecartest.Status) bool {
				// Its observer names the successor once it sees it.
				return s.State == "standing-aside" && !s.IsLeader && s.Name == next.ID
			})
			if old.AppHealth != "unhealthy" || !strings.Contains(old.NotStanding, "consecutive failed health checks") ||
				!strings.Contains(old.NotStanding, "503") {
				t.Errorf("status of the unhealthy instance %+v", old)
			}
			// Metrics say why.
			if v := metric(t, leader, `leader_elector_stepped_down_total{reason="unhealthy"}`); v != 1 {
				t.Errorf("stepped_down_total{reason=unhealthy} = %v, want 1", v)
			}
			if v := metric(t, leader, `leader_elector_app_healthy`); v != 0 {
				t.Errorf("app_healthy = %v, want 0", v)
			}
			if v := metric(t, leader, `leader_elector_state{state="standing-aside"}`); v != 1 {
				t.Errorf("state{standing-aside} = %v, want 1", v)
			}
			// It resigned: the standby's takeover was a handover, not a
			// wait for the lease to expire.
			if v := metric(t, next, `leader_elector_takeover_seconds_count{kind="handover"}`); v < 1 {
				t.Errorf("successor's handover takeovers = %v, want 1", v)
			}

			// The status file followed, and was never torn.
			deadline := time.Now().Add(generous)
			for {
				var fs sidecartest.Status
				b, _ := os.ReadFile(files[leader.ID])
				if json.Unmarshal(b, &fs) == nil && fs.State == "standing-aside" && fs.AppHealth == "unhealthy" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the status file says %s", b)
				}
				time.Sleep(10 * time.Millisecond) // polling a file
			}
			close(stop)
			if n := <-reads; n == 0 {
				t.Error("the status file was never read")
			}

			// Recovery: it stands again (and follows).
			apps[leader.ID].set(true)
			leader.WaitStatus("standing again", generous, func(s sidecartest.Status) bool {
				return s.State == "following" && s.AppHealth == "healthy" && s.NotStanding == "" && s.Name == next.ID
			})
		})
	}
}

func TestUnhealthyStandbyIsNeverElectedAndNobodyLeadsWhenAllAreUnhealthy(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			args := be.args(t)
			apps := map[string]*app{"a": newApp(t), "b": newApp(t)}
			apps["b"].set(false)
			a := sidecartest.Start(t, bin, sidecartest.Options{ID: "a", Args: append(append([]string(nil), args...), healthArgs(apps["a"])...)})
			a.WaitStatus("a leads", generous, func(s sidecartest.Status) bool { return s.IsLeader })
			b := sidecartest.Start(t, bin, sidecartest.Options{ID: "b", Args: append(append([]string(nil), args...), healthArgs(apps["b"])...)})
			b.WaitStatus("b stands aside", generous, func(s sidecartest.Status) bool {
				return s.State == "standing-aside" && s.AppHealth == "unhealthy" && s.Name == "a"
			})

			// The healthy leader's application fails too: nobody is healthy.
			apps["a"].set(false)
			for _, p := range []*sidecartest.Process{a, b} {
				p.WaitStatus("everyone stands aside", generous, func(s sidecartest.Status) bool {
					return s.State == "standing-aside" && !s.IsLeader && s.Name == "" && s.AppHealth == "unhealthy"
				})
			}
			// An observation window of two TTLs (a lease outliving its
			// holder would show up here): still nobody leads.
			window := time.NewTimer(2 * ttl)
			<-window.C
			healed := monotonicNow()
			for _, p := range []*sidecartest.Process{a, b} {
				if s, err := p.Status(t.Context()); err != nil || s.IsLeader || s.Name != "" {
					t.Errorf("%s with every application unhealthy: %+v, %v", p.ID, s, err)
				}
				if v := metric(t, p, `leader_elector_app_healthy`); v != 0 {
					t.Errorf("%s app_healthy = %v, want 0", p.ID, v)
				}
			}

			// b recovers and leads; it never led before.
			apps["b"].set(true)
			b.WaitStatus("b leads", generous, func(s sidecartest.Status) bool { return s.IsLeader && s.AppHealth == "healthy" })
			for _, e := range b.ReadHistory() {
				if e.IsLeader && e.Mono < healed {
					t.Errorf("b led at %d, while its application was unhealthy (healed at %d)", e.Mono, healed)
				}
			}
			a.WaitStatus("a follows b", generous, func(s sidecartest.Status) bool { return s.Name == "b" && s.State == "standing-aside" })
		})
	}
}

// Exec mode.

var (
	jobOnce sync.Once
	jobBin  string
	jobErr  error
)

// leaderJob builds testdata/leaderjob once per test binary.
func leaderJob(t *testing.T) string {
	t.Helper()
	jobOnce.Do(func() {
		dir := filepath.Dir(bin)
		jobBin = filepath.Join(dir, "leaderjob")
		jobErr = sidecartest.BuildPackage("./internal/e2e/testdata/leaderjob", jobBin)
	})
	if jobErr != nil {
		t.Fatal(jobErr)
	}
	return jobBin
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of the histories.
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// jobEvent is one line of leaderjob's log.
type jobEvent struct {
	kind  string // start, end, overlap
	mono  int64
	token int64
	who   string // start: the identity it was given; end: term or crash
	pid   int
}

func readJobLog(t *testing.T, path string) []jobEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []jobEvent
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var e jobEvent
		if _, err := fmt.Sscan(line, &e.kind, &e.mono, &e.token, &e.who, &e.pid); err != nil {
			t.Fatalf("job log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

func countKind(evs []jobEvent, kind string) int {
	n := 0
	for _, e := range evs {
		if e.kind == kind {
			n++
		}
	}
	return n
}

// TestExecRunsTheCommandOnOneInstanceAtATime runs three `sidecar exec`
// wrappers of a real command (leaderjob) on a real etcd, each through its
// own proxy, and across SIGTERM, SIGKILL, blackholed-backend and
// command-crash trials checks from the commands' own records that no two
// ever ran at once, that each got its term's token and its identity, that
// a cut-off leader's command ended before its lease could expire, and that
// a crash hands over at once.
func TestExecRunsTheCommandOnOneInstanceAtATime(t *testing.T) {
	t.Run("etcd", func(t *testing.T) {
		cluster := etcdtest.Single(t)
		execOneAtATime(t, strings.TrimPrefix(cluster.ClientURLs()[0], "http://"), func(addr string) []string {
			return []string{"--backend", "etcd", "--etcd-endpoints", addr, "--etcd-dial-timeout", "1s"}
		})
	})
	t.Run("redis", func(t *testing.T) {
		execOneAtATime(t, redistest.Start(t).Addr(), func(addr string) []string {
			return []string{"--backend", "redis", "--redis-addr", addr}
		})
	})
}

// execOneAtATime runs the trials against the server at target; backend
// gives the flags that reach it through a proxy at addr.
func execOneAtATime(t *testing.T, target string, backend func(addr string) []string) {
	job := leaderJob(t)
	dir := t.TempDir()
	logPath, lockPath := filepath.Join(dir, "job.log"), filepath.Join(dir, "job.lock")
	ids := []string{"a", "b", "c"}
	proxies := map[string]*tcpproxy.Proxy{}
	procs := map[string]*sidecartest.Process{}
	start := func(id string) {
		procs[id] = sidecartest.Start(t, bin, sidecartest.Options{Subcommand: "exec", ID: id,
			Args: append(backend(proxies[id].Addr()), "--election", "exec", "--ttl", ttlFlag,
				"--exec-grace", "300ms", "--exec-on-exit", "campaign", "--", job),
			Env: []string{"JOB_LOG=" + logPath, "JOB_LOCK=" + lockPath}})
	}
	for _, id := range ids {
		proxies[id] = tcpproxy.Start(t, target)
		start(id)
	}
	// waitStart waits for a start beyond the first n and returns it.
	waitStart := func(n int) jobEvent {
		t.Helper()
		deadline := time.Now().Add(generous)
		for {
			evs := readJobLog(t, logPath)
			if countKind(evs, "overlap") > 0 {
				t.Fatalf("a command started while another instance's still ran: %+v", evs)
			}
			seen := 0
			for _, e := range evs {
				if e.kind == "start" {
					if seen++; seen > n {
						return e
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no command started after %d starts: %+v", n, evs)
			}
			time.Sleep(10 * time.Millisecond) // polling a file other processes append to
		}
	}
	handovers := func() float64 {
		sum := 0.0
		for _, p := range procs {
			if !p.Exited() {
				v, _ := p.Metric(t.Context(), `leader_elector_takeover_seconds_count{kind="handover"}`)
				sum += v
			}
		}
		return sum
	}

	cur := waitStart(0)
	for i, kind := range []string{"term", "crash", "blackhole", "kill", "crash", "term", "blackhole", "kill"} {
		n := countKind(readJobLog(t, logPath), "start")
		leader := procs[cur.who]
		if st, err := leader.Status(t.Context()); err != nil || !st.IsLeader || st.FencingToken != cur.token {
			t.Fatalf("trial %d: the command of %s runs with token %d, its wrapper says %+v (%v)", i, cur.who, cur.token, st, err)
		}
		var next jobEvent
		switch kind {
		case "term":
			leader.Signal(syscall.SIGTERM)
			if code := leader.Wait(generous); code != 0 {
				t.Errorf("trial %d: wrapper exit code %d after SIGTERM, want 0", i, code)
			}
			next = waitStart(n)
			start(cur.who)
		case "kill":
			leader.Signal(syscall.SIGKILL)
			leader.Wait(generous)
			next = waitStart(n) // no overlap line: the kernel killed its command
			start(cur.who)
		case "crash":
			before := handovers()
			leader.Signal(syscall.SIGUSR1) // forwarded: the command "crashes"
			next = waitStart(n)
			if next.who == cur.who {
				t.Errorf("trial %d: %s started again at once after its command crashed; it should hold off", i, cur.who)
			}
			if after := handovers(); after <= before {
				t.Errorf("trial %d: no handover after the command crashed (handovers %v → %v)", i, before, after)
			}
		case "blackhole":
			cut := monotonicNow()
			proxies[cur.who].Blackhole()
			next = waitStart(n)
			var end *jobEvent
			for _, e := range readJobLog(t, logPath) {
				if e.kind == "end" && e.pid == cur.pid {
					end = &e
				}
			}
			// The lease was last renewed before the cut, so it expires
			// before cut + TTL: the command must have ended before that.
			if end == nil || end.mono >= cut+int64(ttl) {
				t.Errorf("trial %d: the cut-off leader's command ended at %v, want before cut + TTL (%d)", i, end, cut+int64(ttl))
			}
			proxies[cur.who].Pass()
		}
		t.Logf("trial %d (%s): %s (token %d) → %s (token %d)", i, kind, cur.who, cur.token, next.who, next.token)
		cur = next
	}
	for _, id := range ids {
		procs[id].Signal(syscall.SIGTERM)
	}
	for _, id := range ids {
		if code := procs[id].Wait(generous); code != 0 {
			t.Errorf("%s exit code %d after SIGTERM", id, code)
		}
	}

	// From the commands' own records: one at a time, each with its token.
	evs := readJobLog(t, logPath)
	ends := map[int]jobEvent{}
	var starts []jobEvent
	for _, e := range evs {
		switch e.kind {
		case "overlap":
			t.Errorf("overlap: %+v", e)
		case "start":
			starts = append(starts, e)
		case "end":
			ends[e.pid] = e
		}
	}
	for i, s := range starts {
		if s.token <= 0 || !slices.Contains(ids, s.who) {
			t.Errorf("start %+v: want a token and one of %v as identity", s, ids)
		}
		if i == 0 {
			continue
		}
		prev := starts[i-1]
		if s.token <= prev.token {
			t.Errorf("tokens not increasing: %d then %d", prev.token, s.token)
		}
		if s.mono <= prev.mono {
			t.Errorf("starts out of order: %+v then %+v", prev, s)
		}
		if e, ok := ends[prev.pid]; ok && e.mono >= s.mono {
			t.Errorf("%s's command (token %d) ended at %d, after %s's (token %d) started at %d",
				prev.who, prev.token, e.mono, s.who, s.token, s.mono)
		}
	}
	if len(starts) < 9 {
		t.Errorf("%d commands started, want one per trial and the first", len(starts))
	}
}

func TestExecExitsWithTheCommandsCodeAndHandsOver(t *testing.T) {
	cluster := etcdtest.Single(t)
	dir := t.TempDir()
	args := func(script string) []string {
		return etcdArgs(cluster.ClientURLs(), "--exec-grace", "300ms", "--exec-on-exit", "exit", "--", "sh", "-c", script)
	}
	// a's command waits for a file, then exits 7; b's runs until stopped.
	a := sidecartest.Start(t, bin, sidecartest.Options{Subcommand: "exec", ID: "a",
		Args: args(`echo "$LEADER_ELECTOR_IDENTITY $LEADER_ELECTOR_FENCING_TOKEN" > ` + dir + `/a.env; while [ ! -e ` + dir + `/go ]; do sleep 0.05; done; exit 7`)})
	a.WaitStatus("a leads", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	b := sidecartest.Start(t, bin, sidecartest.Options{Subcommand: "exec", ID: "b",
		Args: args(`echo "$LEADER_ELECTOR_IDENTITY $LEADER_ELECTOR_FENCING_TOKEN" > ` + dir + `/b.env; exec sleep 1000`)})
	b.WaitStatus("b follows", generous, func(s sidecartest.Status) bool { return s.Name == "a" })
	// b's own key is in the queue behind a's, so a's resignation is a
	// handover to b (not an election b joins afterwards).
	waitQueue(t, cluster.ClientURLs(), "/leader-elector/e2e/", 2)
	st, err := a.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFileLine(t, filepath.Join(dir, "a.env")); got != fmt.Sprintf("a %d", st.FencingToken) {
		t.Errorf("a's command saw %q, want identity a and token %d", got, st.FencingToken)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := a.Wait(generous); code != 7 {
		t.Errorf("wrapper exit code %d, want the command's 7", code)
	}
	bs := b.WaitStatus("b leads", generous, func(s sidecartest.Status) bool { return s.IsLeader })
	if got := waitFileLine(t, filepath.Join(dir, "b.env")); got != fmt.Sprintf("b %d", bs.FencingToken) {
		t.Errorf("b's command saw %q, want identity b and token %d", got, bs.FencingToken)
	}
	if v, _ := b.Metric(t.Context(), `leader_elector_takeover_seconds_count{kind="handover"}`); v != 1 {
		t.Errorf("b's handover takeovers = %v, want 1: a resigned when its command exited", v)
	}
}

// waitQueue waits until n candidates' keys are under prefix in etcd.
func waitQueue(t *testing.T, endpoints []string, prefix string, n int64) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(generous)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil && resp.Count >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d candidates under %s: %v, %v", n, prefix, resp, err)
		}
		time.Sleep(10 * time.Millisecond) // polling etcd; no event to wait on in this test
	}
}

// waitFileLine waits until path holds a complete line and returns it.
func waitFileLine(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(generous)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written", path)
		}
		time.Sleep(10 * time.Millisecond) // polling a file another process writes
	}
}
