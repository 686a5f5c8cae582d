package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// sseEvent is one server-sent event, or a comment when comment is set.
type sseEvent struct {
	id, event, data string
	comment         string
}

// readEvent reads up to and including the blank line ending the next event.
func readEvent(r *bufio.Reader) (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return ev, nil
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			ev.comment = value
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			ev.data = value
		}
	}
}

// nextStatus reads events until a status event and decodes it.
func nextStatus(t *testing.T, r *bufio.Reader) (string, statusJSON) {
	t.Helper()
	for {
		ev, err := readEvent(r)
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		if ev.comment != "" {
			continue
		}
		if ev.event != "status" {
			t.Fatalf("event type = %q, want status", ev.event)
		}
		var st statusJSON
		if err := json.Unmarshal([]byte(ev.data), &st); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		return ev.id, st
	}
}

// openWatch starts GET /watch on baseURL and returns the stream; the request
// ends with the test, or after a generous deadline so a bug cannot hang it.
func openWatch(t *testing.T, client *http.Client, baseURL string) (*http.Response, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Fatalf("Content-Type = %q, want text/event-stream", got)
	}
	return resp, bufio.NewReader(resp.Body)
}

func newTestServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

func TestWatchSendsInitialStatusAndEachChange(t *testing.T) {
	f := newFake(followerStatus())
	ts := newTestServer(t, New(Config{Elector: f}).Handler())
	resp, r := openWatch(t, ts.Client(), ts.URL)
	defer resp.Body.Close()

	id, st := nextStatus(t, r)
	if id != "1" || st.IsLeader || st.Identity != "pod-b" || st.Name != "pod-a" {
		t.Fatalf("initial event id=%s %+v, want id 1 with pod-b following pod-a", id, st)
	}

	f.update(func(st *election.Status) {
		st.Leader = ""
		st.FencingToken = 0
	})
	id, st = nextStatus(t, r)
	if id != "2" || st.Name != "" || st.FencingToken != 0 {
		t.Fatalf("second event id=%s %+v, want id 2 with no leader", id, st)
	}

	f.update(func(st *election.Status) {
		st.Leader = "pod-b"
		st.IsLeader = true
		st.FencingToken = 43
	})
	id, st = nextStatus(t, r)
	if id != "3" || !st.IsLeader || st.Name != "pod-b" || st.FencingToken != 43 {
		t.Fatalf("third event id=%s %+v, want id 3 with pod-b leading at token 43", id, st)
	}
}

func TestWatchKeepAlive(t *testing.T) {
	f := newFake(followerStatus())
	ts := newTestServer(t, New(Config{Elector: f, KeepAlive: 10 * time.Millisecond}).Handler())
	resp, r := openWatch(t, ts.Client(), ts.URL)
	defer resp.Body.Close()

	nextStatus(t, r)
	for range 3 {
		ev, err := readEvent(r)
		if err != nil {
			t.Fatal(err)
		}
		if ev.comment == "" {
			t.Fatalf("got %+v while the status did not change, want a keep-alive comment", ev)
		}
	}
}

func TestWatchEndsWhenClientLeaves(t *testing.T) {
	f := newFake(followerStatus())
	done := make(chan struct{})
	s := New(Config{Elector: f})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		s.Handler().ServeHTTP(w, r)
	})
	ts := newTestServer(t, h)
	resp, r := openWatch(t, ts.Client(), ts.URL)
	nextStatus(t, r)
	_ = resp.Body.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watch handler still running after the client left")
	}
}

// startServer runs Serve on a free loopback port until the test ends and
// returns its base URL and a function that stops it and returns Serve's error.
func startServer(t *testing.T, s *Server) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-served:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("Serve did not return after its context ended")
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop server: %v", err)
		}
	})
	select {
	case <-s.Listening():
	case err := <-served:
		served <- err // for stop
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not listen")
	}
	if s.cfg.Addr == "" {
		return "", stop // only a control socket
	}
	if s.Addr() == "" {
		t.Fatal("Addr is empty after listening")
	}
	return "http://" + s.Addr(), stop
}

func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestServeAnswersAndShutsDownCleanly(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", Elector: newFake(leaderStatus())})
	url, stop := startServer(t, s)
	resp, err := newClient(t).Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	resp.Body.Close()
	if body != `{"name":"pod-a"}` {
		t.Errorf("GET / = %q", body)
	}
	if err := stop(); err != nil {
		t.Errorf("Serve = %v, want nil after a clean shutdown", err)
	}
}

func TestServeWatchEndsOnShutdown(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", Elector: newFake(followerStatus())})
	// Longer than the test's own deadline: if the stream held Shutdown up,
	// Serve would not return in time.
	s.timeouts.shutdown = time.Minute
	s.timeouts.write = 100 * time.Millisecond
	url, stop := startServer(t, s)
	resp, r := openWatch(t, newClient(t), url)
	defer resp.Body.Close()
	nextStatus(t, r)
	// Let the last write's deadline lapse while the stream idles (no
	// keep-alive is due): the stream must still end cleanly.
	<-time.After(3 * s.timeouts.write)

	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("shutdown took %v with a watch open", d)
	}
	// The stream ends cleanly rather than being cut off.
	if _, err := io.ReadAll(r); err != nil {
		t.Errorf("reading the rest of the stream: %v", err)
	}
}

func TestServeWatchOutlivesServerTimeouts(t *testing.T) {
	f := newFake(followerStatus())
	s := New(Config{Addr: "127.0.0.1:0", Elector: f, KeepAlive: 20 * time.Millisecond})
	s.timeouts.read = 100 * time.Millisecond
	s.timeouts.write = 100 * time.Millisecond
	url, _ := startServer(t, s)
	resp, r := openWatch(t, newClient(t), url)
	defer resp.Body.Close()
	nextStatus(t, r)

	// Keep reading keep-alives until well past both timeouts.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, err := readEvent(r); err != nil {
			t.Fatalf("stream broke after %v: %v", 500*time.Millisecond-time.Until(deadline), err)
		}
	}
	f.update(func(st *election.Status) { st.FencingToken = 99 })
	if id, st := nextStatus(t, r); id != "2" || st.FencingToken != 99 {
		t.Fatalf("event id=%s %+v, want id 2 with token 99", id, st)
	}
}

func TestServeAddressInUse(t *testing.T) {
	first := New(Config{Addr: "127.0.0.1:0", Elector: newFake(leaderStatus())})
	startServer(t, first)

	second := New(Config{Addr: first.Addr(), Elector: newFake(leaderStatus())})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := second.Serve(ctx)
	if err == nil {
		t.Fatal("Serve on an address in use returned nil")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve = %v, want a listen error", err)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Serve = %v, want address already in use", err)
	}
	select {
	case <-second.Listening():
	default:
		t.Error("Listening not closed after the listen failed")
	}
	if a := second.Addr(); a != "" {
		t.Errorf("Addr = %q after the listen failed, want empty", a)
	}
}
