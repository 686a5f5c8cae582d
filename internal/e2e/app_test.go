package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdtest"
	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
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

var _ = context.Background

// monotonicNow reads CLOCK_MONOTONIC, the clock of the histories.
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}
