package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var since = time.Date(2026, 3, 4, 5, 6, 7, 800_000_000, time.FixedZone("CET", 3600))

func leaderStatus() election.Status {
	return election.Status{
		Election:     "my-app",
		Backend:      "etcd",
		Identity:     "pod-a",
		TTL:          2500 * time.Millisecond,
		Leader:       "pod-a",
		IsLeader:     true,
		FencingToken: 42,
		Since:        since,
		Ready:        true,
		State:        election.StateLeading,
	}
}

func followerStatus() election.Status {
	st := leaderStatus()
	st.Identity = "pod-b"
	st.IsLeader = false
	return st
}

// do serves one request from remoteAddr (the default when empty) and returns
// the recorded response.
func do(t *testing.T, h http.Handler, method, target, remoteAddr string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if remoteAddr != "" {
		req.RemoteAddr = remoteAddr
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

func TestRootKeepsContribContract(t *testing.T) {
	for _, tc := range []struct {
		leader string
		want   string
	}{
		{"pod-a", `{"name":"pod-a"}`},
		{"", `{"name":""}`},
	} {
		st := followerStatus()
		st.Leader = tc.leader
		s := New(Config{Elector: newFake(st)})
		resp := do(t, s.Handler(), http.MethodGet, "/", "")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("leader %q: status = %d, want 200", tc.leader, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("leader %q: Content-Type = %q", tc.leader, got)
		}
		if got := readBody(t, resp); got != tc.want {
			t.Errorf("leader %q: body = %q, want %q", tc.leader, got, tc.want)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	s := New(Config{Elector: newFake(leaderStatus())})
	resp := do(t, s.Handler(), http.MethodGet, "/status", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(readBody(t, resp)), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name":          "pod-a",
		"identity":      "pod-a",
		"is_leader":     true,
		"fencing_token": float64(42),
		"election":      "my-app",
		"backend":       "etcd",
		"since":         "2026-03-04T04:06:07.8Z",
		"ttl_seconds":   2.5,
		"ready":         true,
		"state":         "leading",
	}
	if len(got) != len(want) {
		t.Errorf("fields = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestStatusOmitsZeroSince(t *testing.T) {
	s := New(Config{Elector: newFake(election.Status{Identity: "pod-a"})})
	body := readBody(t, do(t, s.Handler(), http.MethodGet, "/status", ""))
	if strings.Contains(body, "since") {
		t.Errorf("body %s has since for a zero time", body)
	}
	if !strings.Contains(body, `"name":""`) || !strings.Contains(body, `"fencing_token":0`) {
		t.Errorf("body %s lacks the empty leader or zero token", body)
	}
}

func TestRoleEndpoints(t *testing.T) {
	for _, tc := range []struct {
		path     string
		isLeader bool
		want     int
	}{
		{"/leader", true, http.StatusOK},
		{"/leader", false, http.StatusServiceUnavailable},
		{"/follower", true, http.StatusServiceUnavailable},
		{"/follower", false, http.StatusOK},
	} {
		st := leaderStatus()
		if !tc.isLeader {
			st = followerStatus()
		}
		s := New(Config{Elector: newFake(st)})
		resp := do(t, s.Handler(), http.MethodGet, tc.path, "")
		if resp.StatusCode != tc.want {
			t.Errorf("%s while is_leader=%v: status = %d, want %d", tc.path, tc.isLeader, resp.StatusCode, tc.want)
		}
		var got statusJSON
		if err := json.Unmarshal([]byte(readBody(t, resp)), &got); err != nil {
			t.Errorf("%s: %v", tc.path, err)
		}
		if got.IsLeader != tc.isLeader || got.Identity != st.Identity {
			t.Errorf("%s: body = %+v, want the status of %s", tc.path, got, st.Identity)
		}
	}
}

func TestHealthz(t *testing.T) {
	f := newFake(followerStatus())
	s := New(Config{Elector: f})
	resp := do(t, s.Handler(), http.MethodGet, "/healthz", "")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || body != "ok" {
		t.Errorf("healthy: %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
	f.setHealthy(false)
	if resp := do(t, s.Handler(), http.MethodGet, "/healthz", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("unhealthy: status = %d, want 503", resp.StatusCode)
	}
}

func TestReadyz(t *testing.T) {
	f := newFake(election.Status{Identity: "pod-a"})
	s := New(Config{Elector: f})
	if resp := do(t, s.Handler(), http.MethodGet, "/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("not ready: status = %d, want 503", resp.StatusCode)
	}
	f.update(func(st *election.Status) { st.Ready = true })
	resp := do(t, s.Handler(), http.MethodGet, "/readyz", "")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || body != "ok" {
		t.Errorf("ready: %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
}

func TestMetricsMounted(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "leader_elector_is_leader 1\n")
	})
	s := New(Config{Elector: newFake(leaderStatus()), Metrics: metrics})
	resp := do(t, s.Handler(), http.MethodGet, "/metrics", "")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || body != "leader_elector_is_leader 1\n" {
		t.Errorf("got %d %q, want the metrics handler's answer", resp.StatusCode, body)
	}

	s = New(Config{Elector: newFake(leaderStatus())})
	if resp := do(t, s.Handler(), http.MethodGet, "/metrics", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("without a metrics handler: status = %d, want 404", resp.StatusCode)
	}
}

func TestUnknownPath(t *testing.T) {
	s := New(Config{Elector: newFake(leaderStatus())})
	for _, p := range []string{"/nope", "/status/x", "/index.html"} {
		if resp := do(t, s.Handler(), http.MethodGet, p, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status = %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestWrongMethod(t *testing.T) {
	s := New(Config{Elector: newFake(leaderStatus())})
	for _, tc := range []struct {
		method, path, allow string
	}{
		{http.MethodPost, "/", "GET, HEAD"},
		{http.MethodPost, "/status", "GET, HEAD"},
		{http.MethodDelete, "/leader", "GET, HEAD"},
		{http.MethodPut, "/watch", "GET, HEAD"},
		{http.MethodGet, "/resign", "POST"},
		{http.MethodPut, "/resign", "POST"},
	} {
		resp := do(t, s.Handler(), tc.method, tc.path, "127.0.0.1:1")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status = %d, want 405", tc.method, tc.path, resp.StatusCode)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

func TestResignFromLoopback(t *testing.T) {
	for _, remote := range []string{"127.0.0.1:40000", "127.1.2.3:1", "[::1]:40000", "[::ffff:127.0.0.1]:40000"} {
		f := newFake(leaderStatus())
		s := New(Config{Elector: f})
		resp := do(t, s.Handler(), http.MethodPost, "/resign", remote)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("from %s: status = %d, want 200", remote, resp.StatusCode)
		}
		var got statusJSON
		if err := json.Unmarshal([]byte(readBody(t, resp)), &got); err != nil {
			t.Errorf("from %s: %v", remote, err)
		}
		if got.IsLeader || got.Identity != "pod-a" {
			t.Errorf("from %s: body = %+v, want the status after resigning", remote, got)
		}
		if n := f.resignCount(); n != 1 {
			t.Errorf("from %s: Resign called %d times, want 1", remote, n)
		}
	}
}

func TestResignRefusesNonLoopback(t *testing.T) {
	for _, remote := range []string{"10.0.0.7:40000", "192.0.2.1:1234", "[2001:db8::1]:80", "[::ffff:10.0.0.1]:1", "garbage", ""} {
		f := newFake(leaderStatus())
		s := New(Config{Elector: f})
		req := httptest.NewRequest(http.MethodPost, "/resign", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("from %q: status = %d, want 403", remote, rec.Code)
		}
		if n := f.resignCount(); n != 0 {
			t.Errorf("from %q: Resign called %d times, want 0", remote, n)
		}
		if st, _ := f.Status(); !st.IsLeader {
			t.Errorf("from %q: leadership was given up", remote)
		}
	}
}

func TestResignRefusesCrossOriginBrowser(t *testing.T) {
	f := newFake(leaderStatus())
	s := New(Config{Elector: f})
	req := httptest.NewRequest(http.MethodPost, "/resign", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("status = %d, want 403", rec.Code)
	}
	if n := f.resignCount(); n != 0 {
		t.Errorf("Resign called %d times, want 0", n)
	}
}

func TestResignNotLeader(t *testing.T) {
	f := newFake(followerStatus())
	s := New(Config{Elector: f})
	resp := do(t, s.Handler(), http.MethodPost, "/resign", "127.0.0.1:40000")
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("status = %d, want 409", resp.StatusCode)
	}
	if n := f.resignCount(); n != 1 {
		t.Errorf("Resign called %d times, want 1", n)
	}
}

func TestResignFailure(t *testing.T) {
	f := newFake(leaderStatus())
	f.resignErr = errors.New("backend unreachable")
	s := New(Config{Elector: f})
	resp := do(t, s.Handler(), http.MethodPost, "/resign", "127.0.0.1:40000")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", resp.StatusCode)
	}
	if body := readBody(t, resp); strings.Contains(body, "backend unreachable") {
		t.Errorf("body %q leaks the internal error", body)
	}
}

func FuzzIsLoopback(f *testing.F) {
	for _, s := range []string{"127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1", "10.0.0.1:1", "[fe80::1%eth0]:1", "[::1%lo]:1", "localhost:1", ":1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, remote string) {
		if !isLoopback(remote) {
			return
		}
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			t.Fatalf("isLoopback(%q) but SplitHostPort fails: %v", remote, err)
		}
		// net.ParseIP is an independent parser, but knows no IPv6 zones.
		if i := strings.IndexByte(host, '%'); i >= 0 {
			host = host[:i]
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Fatalf("isLoopback(%q) but %q is not a loopback IP", remote, host)
		}
	})
}

func TestStatusShowsBackendCaveats(t *testing.T) {
	st := leaderStatus()
	st.Caveats = "lock expiry follows the server's wall clock"
	s := New(Config{Elector: newFake(st)})
	body := readBody(t, do(t, s.Handler(), http.MethodGet, "/status", ""))
	if !strings.Contains(body, `"caveats":"lock expiry follows the server's wall clock"`) {
		t.Errorf("body %s lacks the caveats", body)
	}
}
