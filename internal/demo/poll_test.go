package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Run's default janitor is this program: the test binary plays it.
	if len(os.Args) > 1 && os.Args[1] == "janitor" {
		os.Exit(Command(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "demo-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if demoBin, err = buildDemo(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// fakeSidecar serves a settable GET /status.
type fakeSidecar struct {
	srv *httptest.Server
	mu  sync.Mutex
	st  status
}

func newFakeSidecar(t *testing.T, id string) *fakeSidecar {
	t.Helper()
	f := &fakeSidecar{st: status{Identity: id}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		st := f.st
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSidecar) addr() string { return f.srv.Listener.Addr().String() }

func (f *fakeSidecar) set(leader string, isLeader bool, tok int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.Name, f.st.IsLeader, f.st.FencingToken, f.st.Ready = leader, isLeader, tok, true
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFetchStatus(t *testing.T) {
	tests := []struct {
		name    string
		code    int
		body    string
		wantErr string
	}{
		{name: "ok", code: 200, body: `{"name":"demo-1","identity":"demo-2","is_leader":false,"fencing_token":12,"election":"demo","backend":"etcd","since":"2026-11-23T21:00:00Z","ttl_seconds":2,"ready":true}`},
		{name: "server error", code: 503, body: `{}`, wantErr: "503"},
		{name: "not JSON", code: 200, body: `<html>`, wantErr: "invalid character"},
		{name: "no identity", code: 200, body: `{"name":"demo-1"}`, wantErr: "no identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.code)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			st, err := fetchStatus(t.Context(), srv.Client(), srv.Listener.Addr().String())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			want := status{Name: "demo-1", Identity: "demo-2", FencingToken: 12, Ready: true}
			if err != nil || st != want {
				t.Fatalf("got %+v, %v; want %+v", st, err, want)
			}
		})
	}
}

func TestMonitorMeasuresLeaderChange(t *testing.T) {
	fakes := []*fakeSidecar{newFakeSidecar(t, "demo-1"), newFakeSidecar(t, "demo-2"), newFakeSidecar(t, "demo-3")}
	for _, f := range fakes {
		f.set("demo-1", f.st.Identity == "demo-1", 7)
	}
	targets := make([]target, len(fakes))
	for i, f := range fakes {
		targets[i] = target{ID: f.st.Identity, Addr: f.addr()}
	}
	var out syncBuffer
	tl := newTimeline(&out, time.Now())
	mon := newMonitor(targets, 5*time.Millisecond, tl.observe)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	monCtx, stopMon := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { mon.run(monCtx) })
	defer wg.Wait()
	defer stopMon()

	s, err := mon.wait(ctx, time.Time{}, func(s snapshot) bool { _, ok := s.agreedLeader(); return ok })
	if err != nil {
		t.Fatalf("wait for the first leader: %v", err)
	}
	if v, _ := s.agreedLeader(); v.ID != "demo-1" || v.St.FencingToken != 7 {
		t.Fatalf("first leader: got %s token %d, want demo-1 token 7", v.ID, v.St.FencingToken)
	}

	sent := time.Now()
	for _, f := range fakes {
		f.set("demo-2", f.st.Identity == "demo-2", 8)
	}
	s, err = mon.wait(ctx, sent, func(s snapshot) bool { _, ok := otherLeader(s, "demo-1"); return ok })
	if err != nil {
		t.Fatalf("wait for the new leader: %v", err)
	}
	next, _ := otherLeader(s, "demo-1")
	if next.ID != "demo-2" || next.St.FencingToken != 8 {
		t.Fatalf("new leader: got %s token %d, want demo-2 token 8", next.ID, next.St.FencingToken)
	}
	// A poll that began before the change must not count, so the measured
	// time can't be negative.
	if s.Start.Before(sent) || next.At.Before(sent) {
		t.Fatalf("poll began %v and answered %v, before the change at %v", s.Start, next.At, sent)
	}

	fakes[2].srv.Close()
	if _, err := mon.wait(ctx, time.Now(), func(s snapshot) bool { return !s.Views[2].Up }); err != nil {
		t.Fatalf("wait for demo-3 to be seen down: %v", err)
	}
	stopMon()
	wg.Wait()

	got := out.String()
	for _, want := range []string{
		"leader=demo-1 token=7   (demo-1 " + port(fakes[0].addr()) + " LEADER, demo-2 " + port(fakes[1].addr()) + " follower",
		"leader=demo-2 token=8   (demo-1 " + port(fakes[0].addr()) + " follower, demo-2 " + port(fakes[1].addr()) + " LEADER",
		"demo-3 " + port(fakes[2].addr()) + " down)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("timeline lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("timeline has %d lines, want 3 (one per change):\n%s", n, got)
	}
}

func TestMonitorWaitEndsWithContext(t *testing.T) {
	mon := newMonitor(nil, time.Millisecond, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := mon.wait(ctx, time.Time{}, func(snapshot) bool { return true }); err == nil {
		t.Fatal("wait with a cancelled context and no poll: got nil error")
	}
}
