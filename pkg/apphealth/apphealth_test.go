package apphealth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// app is a real HTTP server whose health the test sets.
type app struct {
	srv    *httptest.Server
	code   atomic.Int32
	stall  atomic.Bool
	hit    chan struct{} // closed at the first request
	hitOne sync.Once
	unstop chan struct{}
	once   sync.Once
}

func newApp(t *testing.T) *app {
	t.Helper()
	a := &app{unstop: make(chan struct{}), hit: make(chan struct{})}
	a.code.Store(http.StatusOK)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hitOne.Do(func() { close(a.hit) })
		if a.stall.Load() {
			select { // a hung application: answers only when the test ends
			case <-a.unstop:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(int(a.code.Load()))
	}))
	t.Cleanup(func() {
		a.once.Do(func() { close(a.unstop) })
		a.srv.Close()
	})
	return a
}

// start runs a checker on a and stops it at the end of the test.
func start(t *testing.T, o Options, reg prometheus.Registerer) *Checker {
	t.Helper()
	c, err := New(o, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return c
}

// waitHealth waits until the checker's verdict reads want.
func waitHealth(t *testing.T, c *Checker, want string) election.Eligibility {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		el, changed := c.Eligibility()
		if el.Health == want {
			return el
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("health still %q (%s), want %q", el.Health, el.Reason, want)
		}
	}
}

func TestUnknownUntilFirstGoodCheckThenHealthy(t *testing.T) {
	a := newApp(t)
	c, err := New(Options{URL: a.srv.URL, Interval: 10 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if el, _ := c.Eligibility(); el.Eligible || el.Health != Unknown || el.Reason == "" {
		t.Fatalf("before any check: %+v, want unknown and not eligible", el)
	}
	c = start(t, Options{URL: a.srv.URL, Interval: 10 * time.Millisecond}, nil)
	if el := waitHealth(t, c, Healthy); !el.Eligible || el.Reason != "" {
		t.Fatalf("healthy verdict %+v", el)
	}
}

func TestFailureAndSuccessThresholds(t *testing.T) {
	a := newApp(t)
	reg := prometheus.NewRegistry()
	c := start(t, Options{URL: a.srv.URL, Interval: 10 * time.Millisecond, Failures: 3, Successes: 2}, reg)
	waitHealth(t, c, Healthy)

	a.code.Store(http.StatusServiceUnavailable)
	before := testutil.ToFloat64(c.checks.WithLabelValues("failure"))
	el := waitHealth(t, c, Unhealthy)
	failures := testutil.ToFloat64(c.checks.WithLabelValues("failure")) - before
	if failures < 3 {
		t.Errorf("unhealthy after %v failed checks, want at least 3", failures)
	}
	if el.Eligible || !strings.Contains(el.Reason, "3 consecutive failed health checks") || !strings.Contains(el.Reason, "503") {
		t.Errorf("unhealthy verdict %+v", el)
	}
	if got := testutil.ToFloat64(c.healthy); got != 0 {
		t.Errorf("app_healthy = %v while unhealthy, want 0", got)
	}

	a.code.Store(http.StatusNoContent) // any 2xx is good
	beforeOK := testutil.ToFloat64(c.checks.WithLabelValues("success"))
	waitHealth(t, c, Healthy)
	if ok := testutil.ToFloat64(c.checks.WithLabelValues("success")) - beforeOK; ok < 2 {
		t.Errorf("healthy after %v good checks, want at least 2", ok)
	}
	if got := testutil.ToFloat64(c.healthy); got != 1 {
		t.Errorf("app_healthy = %v while healthy, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "leader_elector_app_healthy", "leader_elector_app_health_checks_total"); err != nil || n != 3 {
		t.Errorf("registered series = %d, %v; want 3", n, err)
	}
}

func TestOneFailureBelowTheThresholdChangesNothing(t *testing.T) {
	a := newApp(t)
	c, err := New(Options{URL: a.srv.URL, Failures: 2}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c.record(c.check(ctx))
	_, changed := c.Eligibility()
	a.code.Store(http.StatusInternalServerError)
	c.record(c.check(ctx))
	select {
	case <-changed:
		t.Fatal("one failed check below the threshold changed the verdict")
	default:
	}
	c.record(c.check(ctx))
	if el, _ := c.Eligibility(); el.Health != Unhealthy {
		t.Fatalf("after two failures: %+v", el)
	}
}

func TestRedirectIsAFailedCheck(t *testing.T) {
	a := newApp(t)
	a.code.Store(http.StatusFound)
	c, err := New(Options{URL: a.srv.URL, Failures: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.check(t.Context()); err == nil || !strings.Contains(err.Error(), "302") {
		t.Fatalf("check of a 302 = %v, want a failure naming 302", err)
	}
}

func TestStalledApplicationFailsWithinTheTimeout(t *testing.T) {
	a := newApp(t)
	a.stall.Store(true)
	c, err := New(Options{URL: a.srv.URL, Interval: time.Second, Timeout: 50 * time.Millisecond, Failures: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.check(t.Context()) }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "Timeout") {
			t.Errorf("stalled check = %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second): // generous bound: the timeout is 50 ms
		t.Fatal("a check of a stalled application did not end at its timeout")
	}
	c.client.CloseIdleConnections()
}

func TestEligibilityNeverWaitsForACheck(t *testing.T) {
	a := newApp(t)
	a.stall.Store(true)
	c := start(t, Options{URL: a.srv.URL, Interval: time.Second, Timeout: time.Second}, nil)
	// Wait until a check is in flight (the app saw it), then read.
	select {
	case <-a.hit:
	case <-time.After(10 * time.Second):
		t.Fatal("no check reached the application")
	}
	got := make(chan election.Eligibility, 1)
	go func() { el, _ := c.Eligibility(); got <- el }()
	select {
	case el := <-got:
		if el.Health != Unknown {
			t.Errorf("verdict during the first check = %+v", el)
		}
	case <-time.After(500 * time.Millisecond):
		t.Fatal("Eligibility waited for a stalled check")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o     Options
		field string
	}{
		{Options{}, "URL"},
		{Options{URL: "localhost:8080/healthz"}, "URL"},
		{Options{URL: "ftp://x/"}, "URL"},
		{Options{URL: "http://x/", Interval: -time.Second}, "Interval"},
		{Options{URL: "http://x/", Interval: time.Second, Timeout: 2 * time.Second}, "Timeout"},
		{Options{URL: "http://x/", Failures: -1}, "Failures"},
		{Options{URL: "http://x/", Successes: -2}, "Successes"},
	} {
		err := tc.o.Validate()
		var ce *election.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.o, err, tc.field)
		}
	}
	if err := (Options{URL: "http://127.0.0.1:8080/healthz"}).Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
