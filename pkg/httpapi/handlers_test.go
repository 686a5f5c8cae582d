package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
		"switchover":    false,
		"generation":    float64(0),
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
		h := s.Handler()
		if tc.path == "/resign" {
			h = s.ControlHandler()
		}
		resp := do(t, h, tc.method, tc.path, "127.0.0.1:1")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status = %d, want 405", tc.method, tc.path, resp.StatusCode)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

// doControl serves one request on the control handler, addressed to
// localhost unless host is given, with the given headers.
func doControl(t *testing.T, s *Server, method, target, host string, header map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.Host = "localhost"
	if host != "" {
		req.Host = host
	}
	req.RemoteAddr = "127.0.0.1:40000"
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.ControlHandler().ServeHTTP(rec, req)
	return rec.Result()
}

// errorOf decodes an {"error": ...} answer and fails unless it is one.
func errorOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	body := readBody(t, resp)
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Errorf("body %q is not {\"error\": ...}: %v", body, err)
	}
	return e.Error
}

// On the pod-network listener POST /resign is refused whatever the peer:
// a mesh proxy forwards outside traffic from loopback (127.0.0.6).
func TestResignRefusedOnPodNetwork(t *testing.T) {
	for _, remote := range []string{"127.0.0.6:40000", "127.0.0.1:40000", "[::1]:40000", "10.0.0.7:40000"} {
		f := newFake(leaderStatus())
		s := New(Config{Elector: f})
		resp := do(t, s.Handler(), http.MethodPost, "/resign", remote)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("from %s: status = %d, want 403", remote, resp.StatusCode)
		}
		if msg := errorOf(t, resp); !strings.Contains(msg, "control listener") {
			t.Errorf("from %s: error %q does not point to the control listener", remote, msg)
		}
		if n := f.resignCount(); n != 0 {
			t.Errorf("from %s: Resign called %d times, want 0", remote, n)
		}
	}
}

func TestControlResign(t *testing.T) {
	for _, host := range []string{"localhost", "localhost:4041", "127.0.0.1", "127.0.0.1:9", "[::1]:4041", "LOCALHOST"} {
		f := newFake(leaderStatus())
		s := New(Config{Elector: f})
		resp := doControl(t, s, http.MethodPost, "/resign", host, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Host %s: status = %d, want 200", host, resp.StatusCode)
		}
		var got statusJSON
		if err := json.Unmarshal([]byte(readBody(t, resp)), &got); err != nil {
			t.Errorf("Host %s: %v", host, err)
		}
		if got.IsLeader || got.Identity != "pod-a" {
			t.Errorf("Host %s: body = %+v, want the status after resigning", host, got)
		}
		if n := f.resignCount(); n != 1 {
			t.Errorf("Host %s: Resign called %d times, want 1", host, n)
		}
	}
}

// Every way a web page or a foreign name could reach the control listener
// is refused before the elector is asked.
func TestControlRefusesBrowsersAndForeignHosts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		host   string
		header map[string]string
	}{
		{"DNS rebinding: foreign Host", "evil.example:4041", nil},
		{"foreign Host without port", "evil.example", nil},
		{"Host that only starts like localhost", "localhost.evil.example", nil},
		{"pod IP as Host", "10.0.0.7:4041", nil},
		{"empty Host", "", nil},
		{"cross-origin page", "", map[string]string{"Origin": "http://evil.example"}},
		{"cross-origin page with fetch metadata", "", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}},
		{"sandboxed page", "", map[string]string{"Origin": "null"}},
		{"fetch metadata alone", "", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site page on another port", "", map[string]string{"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}},
	} {
		f := newFake(leaderStatus())
		s := New(Config{Elector: f})
		req := httptest.NewRequest(http.MethodPost, "/resign", nil)
		req.Host = tc.host
		if tc.host == "" && tc.header != nil {
			req.Host = "localhost:4041"
		}
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		s.ControlHandler().ServeHTTP(rec, req)
		resp := rec.Result()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status = %d, want 403", tc.name, resp.StatusCode)
		}
		errorOf(t, resp)
		if n := f.resignCount(); n != 0 {
			t.Errorf("%s: Resign called %d times, want 0", tc.name, n)
		}
	}
}

func TestControlToken(t *testing.T) {
	const token = "s3cret-token-0123456789"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer s3cret-token-0123456788", http.StatusUnauthorized},
		{"prefix of the token", "Bearer s3cret-token", http.StatusUnauthorized},
		{"token with a suffix", "Bearer " + token + "x", http.StatusUnauthorized},
		{"basic scheme", "Basic " + token, http.StatusUnauthorized},
		{"right token", "Bearer " + token, http.StatusOK},
		{"scheme in lower case", "bearer " + token, http.StatusOK},
	} {
		f := newFake(leaderStatus())
		s := New(Config{Elector: f, Control: Control{Socket: "unused", TokenFile: file}})
		var h map[string]string
		if tc.auth != "" {
			h = map[string]string{"Authorization": tc.auth}
		}
		resp := doControl(t, s, http.MethodPost, "/resign", "", h)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status = %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		wantResigns := 0
		if tc.want == http.StatusOK {
			wantResigns = 1
		} else {
			errorOf(t, resp)
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("%s: WWW-Authenticate = %q", tc.name, got)
			}
		}
		if n := f.resignCount(); n != wantResigns {
			t.Errorf("%s: Resign called %d times, want %d", tc.name, n, wantResigns)
		}
	}
}

// The token file is read on every request: a rotated Secret applies at
// once, and an unreadable one refuses rather than letting anyone in.
func TestControlTokenRotatesAndFailsClosed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	write := func(tok string) {
		if err := os.WriteFile(file, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-token-0123456789")
	f := newFake(followerStatus())
	s := New(Config{Elector: f, Control: Control{Socket: "unused", TokenFile: file}})
	auth := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	if resp := doControl(t, s, http.MethodPost, "/resign", "", auth("first-token-0123456789")); resp.StatusCode != http.StatusConflict {
		t.Errorf("first token: status = %d, want 409 (authorized, not leader)", resp.StatusCode)
	}
	write("second-token-0123456789")
	if resp := doControl(t, s, http.MethodPost, "/resign", "", auth("first-token-0123456789")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("old token after rotation: status = %d, want 401", resp.StatusCode)
	}
	if resp := doControl(t, s, http.MethodPost, "/resign", "", auth("second-token-0123456789")); resp.StatusCode != http.StatusConflict {
		t.Errorf("new token: status = %d, want 409", resp.StatusCode)
	}
	write("")
	resp := doControl(t, s, http.MethodPost, "/resign", "", auth(""))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("empty token file: status = %d, want 503", resp.StatusCode)
	}
	errorOf(t, resp)
}

// Unknown parameters are refused, so a request meaning something else
// does not silently become a plain resign.
func TestControlResignRefusesUnknownParameters(t *testing.T) {
	f := newFake(leaderStatus())
	s := New(Config{Elector: f})
	resp := doControl(t, s, http.MethodPost, "/resign?force=1", "", nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status = %d, want 400", resp.StatusCode)
	}
	if msg := errorOf(t, resp); !strings.Contains(msg, `"force"`) {
		t.Errorf("error %q does not name the parameter", msg)
	}
	if n := f.resignCount(); n != 0 {
		t.Errorf("Resign called %d times, want 0", n)
	}
}

func TestControlServesReadOnlyEndpoints(t *testing.T) {
	s := New(Config{Elector: newFake(leaderStatus())})
	resp := doControl(t, s, http.MethodGet, "/", "", nil)
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || body != `{"name":"pod-a"}` {
		t.Errorf("GET / on the control listener: %d %q", resp.StatusCode, body)
	}
	if resp := doControl(t, s, http.MethodGet, "/leader", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /leader on the control listener: %d", resp.StatusCode)
	}
}

func TestResignNotLeader(t *testing.T) {
	f := newFake(followerStatus())
	s := New(Config{Elector: f})
	resp := doControl(t, s, http.MethodPost, "/resign", "", nil)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("status = %d, want 409", resp.StatusCode)
	}
	if msg := errorOf(t, resp); msg != "not leader" {
		t.Errorf("error = %q, want \"not leader\"", msg)
	}
	if n := f.resignCount(); n != 1 {
		t.Errorf("Resign called %d times, want 1", n)
	}
}

func TestResignFailure(t *testing.T) {
	f := newFake(leaderStatus())
	f.resignErr = errors.New("backend unreachable")
	s := New(Config{Elector: f})
	resp := doControl(t, s, http.MethodPost, "/resign", "", nil)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", resp.StatusCode)
	}
	if msg := errorOf(t, resp); strings.Contains(msg, "backend unreachable") {
		t.Errorf("error %q leaks the internal error", msg)
	}
}

func TestErrorAnswersAreJSON(t *testing.T) {
	s := New(Config{Elector: newFake(leaderStatus())})
	for _, tc := range []struct {
		h            http.Handler
		method, path string
		want         int
	}{
		{s.Handler(), http.MethodGet, "/nope", http.StatusNotFound},
		{s.Handler(), http.MethodPost, "/status", http.StatusMethodNotAllowed},
		{s.Handler(), http.MethodPost, "/resign", http.StatusForbidden},
		{s.ControlHandler(), http.MethodGet, "/nope", http.StatusNotFound},
		{s.ControlHandler(), http.MethodGet, "/resign", http.StatusMethodNotAllowed},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		req.Host = "localhost"
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, req)
		resp := rec.Result()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: status = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		errorOf(t, resp)
	}
}

func FuzzLoopbackHost(f *testing.F) {
	for _, s := range []string{"localhost", "localhost:1", "127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1", "10.0.0.1:1",
		"[fe80::1%eth0]:1", "[::1%lo]:1", "evil.example", ":1", "", "127.0.0.1.evil.example", "localhost.", "[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !loopbackHost(host) {
			return
		}
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		// net.ParseIP is an independent parser.
		if ip := net.ParseIP(h); !strings.EqualFold(h, "localhost") && (ip == nil || !ip.IsLoopback()) {
			t.Fatalf("loopbackHost(%q) but %q is neither localhost nor a loopback IP", host, h)
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
