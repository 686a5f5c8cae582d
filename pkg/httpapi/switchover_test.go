package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// fakeSwitchover is a fakeElector that can also hand over.
type fakeSwitchover struct {
	*fakeElector
	mu  sync.Mutex
	err error // returned by HandOver when set
	tos []string
}

func (f *fakeSwitchover) HandOver(ctx context.Context, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tos = append(f.tos, to)
	return f.err
}

func (f *fakeSwitchover) handOvers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tos...)
}

func TestControlSwitchoverHandsOverToTheNamedCandidate(t *testing.T) {
	f := &fakeSwitchover{fakeElector: newFake(leaderStatus())}
	s := New(Config{Elector: f})
	resp := doControl(t, s, http.MethodPost, "/resign?to=pod-b", "", nil)
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d (%s), want 200", resp.StatusCode, body)
	}
	if got := f.handOvers(); len(got) != 1 || got[0] != "pod-b" {
		t.Errorf("HandOver calls %q, want [pod-b]", got)
	}
	if n := f.resignCount(); n != 0 {
		t.Errorf("Resign called %d times, want 0: a switchover is not a plain resign", n)
	}
}

func TestControlSwitchoverErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   string
		err      error
		plain    bool // an Elector without HandOver
		wantCode int
		wantMsg  string
	}{
		{name: "not in line", target: "/resign?to=pod-z", err: fmt.Errorf("%w: no candidate named \"pod-z\"", election.ErrNotInLine),
			wantCode: http.StatusConflict, wantMsg: `cannot hand over to "pod-z"`},
		{name: "not leader", target: "/resign?to=pod-b", err: election.ErrNotLeader, wantCode: http.StatusConflict, wantMsg: "not leader"},
		{name: "unsupported backend", target: "/resign?to=pod-b", err: election.ErrHandoffUnsupported,
			wantCode: http.StatusNotImplemented, wantMsg: "cannot hand leadership to a chosen candidate"},
		{name: "elector without switchover", target: "/resign?to=pod-b", plain: true,
			wantCode: http.StatusNotImplemented, wantMsg: `"switchover": false`},
		{name: "backend failure", target: "/resign?to=pod-b", err: fmt.Errorf("etcd: handing over: timeout"),
			wantCode: http.StatusInternalServerError, wantMsg: "see the sidecar's log"},
		{name: "empty to", target: "/resign?to=", wantCode: http.StatusBadRequest, wantMsg: `"to"`},
		{name: "two to", target: "/resign?to=a&to=b", wantCode: http.StatusBadRequest, wantMsg: `"to"`},
		{name: "to and another", target: "/resign?to=a&now=1", wantCode: http.StatusBadRequest, wantMsg: `"now"`},
		// Query() would drop the pairs it cannot parse and resign plainly.
		{name: "semicolon", target: "/resign?to=pod-b;x=1", wantCode: http.StatusBadRequest, wantMsg: "malformed query"},
		{name: "bad escape", target: "/resign?to=%zz", wantCode: http.StatusBadRequest, wantMsg: "malformed query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := newFake(leaderStatus())
			var el Elector = &fakeSwitchover{fakeElector: fe, err: tc.err}
			if tc.plain {
				el = fe
			}
			s := New(Config{Elector: el})
			resp := doControl(t, s, http.MethodPost, tc.target, "", nil)
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if msg := errorOf(t, resp); !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("error %q does not contain %q", msg, tc.wantMsg)
			}
			if n := fe.resignCount(); n != 0 {
				t.Errorf("Resign called %d times, want 0", n)
			}
		})
	}
}

// The switchover needs the control listener's guard like a plain resign.
func TestControlSwitchoverNeedsTheToken(t *testing.T) {
	f := &fakeSwitchover{fakeElector: newFake(leaderStatus())}
	token := writeToken(t, "switchover-token-0123456789")
	s := New(Config{Elector: f, Control: Control{Socket: "unused", TokenFile: token}})
	resp := doControl(t, s, http.MethodPost, "/resign?to=pod-b", "", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: status = %d, want 401", resp.StatusCode)
	}
	resp = doControl(t, s, http.MethodPost, "/resign?to=pod-b", "", map[string]string{"Authorization": "Bearer switchover-token-0123456789"})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with the token: status = %d, want 200", resp.StatusCode)
	}
	if got := f.handOvers(); len(got) != 1 {
		t.Errorf("HandOver calls %q, want one", got)
	}
}

func TestStatusShowsSwitchoverSupport(t *testing.T) {
	st := leaderStatus()
	st.Switchover = true
	s := New(Config{Elector: newFake(st)})
	if body := readBody(t, do(t, s.Handler(), http.MethodGet, "/status", "")); !strings.Contains(body, `"switchover":true`) {
		t.Errorf("body %s lacks \"switchover\":true", body)
	}
}

// A form body naming a successor would be ignored by a plain resign: it is
// refused, and nothing is resigned.
func TestControlResignRefusesABody(t *testing.T) {
	fe := newFake(leaderStatus())
	s := New(Config{Elector: &fakeSwitchover{fakeElector: fe}})
	req := httptest.NewRequest(http.MethodPost, "/resign", strings.NewReader("to=pod-b"))
	req.Host = "localhost"
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	s.ControlHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("status = %d, want 400", rec.Code)
	}
	if n := fe.resignCount(); n != 0 {
		t.Errorf("Resign called %d times, want 0", n)
	}
}
