package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestSetLeaderCountsTransitions(t *testing.T) {
	m := New(Info{Version: "v1", Backend: "etcd"})
	steps := []struct {
		leader          bool
		wantGauge       float64
		wantTransitions float64
	}{
		{false, 0, 0}, // already a follower: no transition
		{true, 1, 1},
		{true, 1, 1}, // repeated: no transition
		{false, 0, 2},
		{true, 1, 3},
	}
	for i, s := range steps {
		m.SetLeader(s.leader)
		if got := testutil.ToFloat64(m.isLeader); got != s.wantGauge {
			t.Errorf("step %d: is_leader = %v, want %v", i, got, s.wantGauge)
		}
		if got := testutil.ToFloat64(m.transitions); got != s.wantTransitions {
			t.Errorf("step %d: transitions = %v, want %v", i, got, s.wantTransitions)
		}
	}
}

func TestSetLeaderConcurrent(t *testing.T) {
	m := New(Info{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { m.SetLeader(true) })
	}
	wg.Wait()
	if got := testutil.ToFloat64(m.transitions); got != 1 {
		t.Errorf("transitions = %v, want 1", got)
	}
}

func TestTakeoverByKind(t *testing.T) {
	m := New(Info{})
	m.Takeover(3*time.Millisecond, election.Handover)
	m.Takeover(2*time.Second, election.Failover)
	m.Takeover(time.Millisecond, "")
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{} // kind → sum of observations
	for _, mf := range mfs {
		if mf.GetName() != "leader_elector_takeover_seconds" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			if metric.GetHistogram().GetSampleCount() != 1 {
				t.Errorf("%v: %d samples, want 1", metric.GetLabel(), metric.GetHistogram().GetSampleCount())
			}
			got[metric.GetLabel()[0].GetValue()] = metric.GetHistogram().GetSampleSum()
		}
	}
	want := map[string]float64{"handover": 0.003, "failover": 2, "unknown": 0.001}
	if len(got) != len(want) {
		t.Fatalf("takeover series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("takeover{kind=%q} sum %v, want %v", k, got[k], v)
		}
	}
}

func TestSteppedDown(t *testing.T) {
	m := New(Info{})
	// Documented reasons exist before the first event.
	for _, r := range []string{"resigned", "deadline", "lost", "shutdown"} {
		if got := testutil.ToFloat64(m.steppedDown.WithLabelValues(r)); got != 0 {
			t.Errorf("stepped_down_total{reason=%q} = %v before any event, want 0", r, got)
		}
	}
	m.SteppedDown("deadline")
	m.SteppedDown("deadline")
	m.SteppedDown("lost")
	for reason, want := range map[string]float64{"deadline": 2, "lost": 1, "resigned": 0, "shutdown": 0} {
		if got := testutil.ToFloat64(m.steppedDown.WithLabelValues(reason)); got != want {
			t.Errorf("stepped_down_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// TestStateGauge: exactly one state reads 1, named as the engine names it.
func TestStateGauge(t *testing.T) {
	m := New(Info{})
	check := func(want election.State) {
		t.Helper()
		for _, s := range election.States {
			v := 0.0
			if s == want {
				v = 1
			}
			if got := testutil.ToFloat64(m.state.WithLabelValues(s.String())); got != v {
				t.Errorf("state{state=%q} = %v, want %v", s, got, v)
			}
		}
	}
	check(election.StateStopped)
	m.SetState(election.StateFollowing)
	check(election.StateFollowing)
	m.SetState(election.StateLeading)
	check(election.StateLeading)
}

func TestBackendError(t *testing.T) {
	m := New(Info{})
	m.BackendError("renew")
	m.BackendError("renew")
	m.BackendError("observe")
	for op, want := range map[string]float64{"renew": 2, "observe": 1, "grant": 0, "campaign": 0, "resign": 0} {
		if got := testutil.ToFloat64(m.backendErrors.WithLabelValues(op)); got != want {
			t.Errorf("backend_errors_total{op=%q} = %v, want %v", op, got, want)
		}
	}
}

func TestPublishError(t *testing.T) {
	m := New(Info{})
	if got := testutil.CollectAndCount(m.publishErrors); got != 0 {
		t.Fatalf("publish_errors_total has %d series before any error, want 0", got)
	}
	m.PublishError("labels")
	m.PublishError("labels")
	m.PublishError("readiness-gate")
	if got := testutil.ToFloat64(m.publishErrors.WithLabelValues("labels")); got != 2 {
		t.Errorf(`publish_errors_total{publisher="labels"} = %v, want 2`, got)
	}
	if got := testutil.ToFloat64(m.publishErrors.WithLabelValues("readiness-gate")); got != 1 {
		t.Errorf(`publish_errors_total{publisher="readiness-gate"} = %v, want 1`, got)
	}
}

func TestBuildInfo(t *testing.T) {
	m := New(Info{Version: "v1.2.3", Backend: "redis"})
	want := `
# HELP leader_elector_build_info Always 1; the labels describe the running sidecar.
# TYPE leader_elector_build_info gauge
leader_elector_build_info{backend="redis",goversion="` + runtime.Version() + `",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "leader_elector_build_info"); err != nil {
		t.Error(err)
	}
}

func TestHandlerServesRegistry(t *testing.T) {
	m := New(Info{Version: "v1", Backend: "etcd"})
	m.SetLeader(true)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"leader_elector_is_leader 1\n",
		"leader_elector_leadership_transitions_total 1\n",
		`leader_elector_backend_errors_total{op="renew"} 0` + "\n",
		"go_goroutines ",
		"process_start_time_seconds ",
		"promhttp_metric_handler_errors_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics output lacks %q", want)
		}
	}
}
