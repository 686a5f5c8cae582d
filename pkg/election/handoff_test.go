package election

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// handing is a scripted backend that implements Handoff.
type handing struct {
	*scripted
	mu       sync.Mutex
	checkErr error
	handErr  error
	handed   []string
	// during is called inside HandOver, before it answers.
	during func()
}

func (h *handing) CheckSuccessor(ctx context.Context, cand Candidacy, to string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.checkErr
}

func (h *handing) HandOver(ctx context.Context, cand Candidacy, to string) error {
	h.mu.Lock()
	during, err := h.during, h.handErr
	h.handed = append(h.handed, to)
	h.mu.Unlock()
	if during != nil {
		during()
	}
	return err
}

// syncBuffer is a log sink the engine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// leadingWith starts an engine on h that leads with token 5, and returns it
// with a count of the step-downs it publishes and its log.
func leadingWith(t *testing.T, h Backend, wins chan int64) (*Engine, func() int, *syncBuffer) {
	t.Helper()
	var (
		mu       sync.Mutex
		led      bool
		stepDown int
	)
	logs := &syncBuffer{}
	e, _ := start(t, Config{Election: "e", Identity: "a", Backend: h, TTL: 10 * time.Second, ResignHoldoff: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnStatus: func(st Status) {
			mu.Lock()
			defer mu.Unlock()
			if led && !st.IsLeader {
				stepDown++
			}
			led = st.IsLeader
		}})
	wins <- 5
	waitFor(t, e, "leadership", func(s Status) bool { return s.IsLeader })
	return e, func() int { mu.Lock(); defer mu.Unlock(); return stepDown }, logs
}

func TestHandOverUnsupported(t *testing.T) {
	b := newScripted(10 * time.Second)
	e, stepDowns, _ := leadingWith(t, b, b.wins)
	if st, _ := e.Status(); st.Switchover {
		t.Error("Status.Switchover is true for a backend without Handoff")
	}
	if err := e.HandOver(t.Context(), "b"); !errors.Is(err, ErrHandoffUnsupported) {
		t.Fatalf("HandOver = %v, want ErrHandoffUnsupported", err)
	}
	if st, _ := e.Status(); !st.IsLeader || st.FencingToken != 5 || stepDowns() != 0 {
		t.Fatalf("after an unsupported HandOver: %+v, %d step-downs; want the same term, uninterrupted", st, stepDowns())
	}
}

func TestHandOverNotInLineKeepsTheTerm(t *testing.T) {
	b := newScripted(10 * time.Second)
	h := &handing{scripted: b, checkErr: fmt.Errorf("%w: no candidate named \"z\"", ErrNotInLine)}
	e, stepDowns, _ := leadingWith(t, h, b.wins)
	if st, _ := e.Status(); !st.Switchover {
		t.Error("Status.Switchover is false for a backend with Handoff")
	}
	for _, to := range []string{"z", "a", ""} { // unknown, itself, nobody
		if err := e.HandOver(t.Context(), to); !errors.Is(err, ErrNotInLine) {
			t.Errorf("HandOver(%q) = %v, want ErrNotInLine", to, err)
		}
	}
	if st, _ := e.Status(); !st.IsLeader || st.FencingToken != 5 || stepDowns() != 0 {
		t.Fatalf("after refused handovers: %+v, %d step-downs; want the same term, uninterrupted", st, stepDowns())
	}
	if len(h.handed) != 0 {
		t.Errorf("HandOver reached the backend for %q after a failed check", h.handed)
	}
}

// The engine stops claiming before the backend makes the successor leader,
// and on success holds off like after a resign.
func TestHandOverStopsClaimingFirst(t *testing.T) {
	b := newScripted(10 * time.Second)
	h := &handing{scripted: b}
	e, _, _ := leadingWith(t, h, b.wins)
	var claimedDuring bool
	h.during = func() {
		st, _ := e.Status()
		claimedDuring = st.IsLeader
	}
	if err := e.HandOver(t.Context(), "b"); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	if claimedDuring {
		t.Error("the engine still claimed leadership while the backend handed over")
	}
	if st, _ := e.Status(); st.IsLeader || st.State != StateHoldingOff {
		t.Fatalf("after HandOver: %+v, want holding off", st)
	}
	if len(h.handed) != 1 || h.handed[0] != "b" {
		t.Errorf("backend HandOver calls %q, want [b]", h.handed)
	}
	if err := e.HandOver(t.Context(), "b"); !errors.Is(err, ErrNotLeader) {
		t.Errorf("HandOver while holding off = %v, want ErrNotLeader", err)
	}
}

// A successor that leaves between the check and the handover: nothing
// changed in the backend, so the leader leads on with the same token after
// a step-down of an instant, through legal transitions only.
func TestHandOverSuccessorLeftResumesTheTerm(t *testing.T) {
	b := newScripted(10 * time.Second)
	h := &handing{scripted: b, handErr: fmt.Errorf("%w: the successor left", ErrNotInLine)}
	e, stepDowns, logs := leadingWith(t, h, b.wins)
	if err := e.HandOver(t.Context(), "b"); !errors.Is(err, ErrNotInLine) {
		t.Fatalf("HandOver = %v, want ErrNotInLine", err)
	}
	if st, _ := e.Status(); !st.IsLeader || st.FencingToken != 5 || st.State != StateLeading {
		t.Fatalf("after the successor left: %+v, want leading with token 5", st)
	}
	if n := stepDowns(); n != 1 {
		t.Errorf("%d step-downs, want the one before the backend call", n)
	}
	if strings.Contains(logs.String(), "illegal state transition") {
		t.Errorf("illegal transition logged:\n%s", logs)
	}
}

// A backend failure during the handover leaves the outcome unknown: the
// engine steps down and holds off as after a resign, never leading on.
func TestHandOverBackendFailureStepsDown(t *testing.T) {
	b := newScripted(10 * time.Second)
	h := &handing{scripted: b, handErr: errors.New("connection reset")}
	e, _, logs := leadingWith(t, h, b.wins)
	if err := e.HandOver(t.Context(), "b"); err == nil || errors.Is(err, ErrNotInLine) {
		t.Fatalf("HandOver = %v, want the backend's error", err)
	}
	if st, _ := e.Status(); st.IsLeader || st.State != StateHoldingOff {
		t.Fatalf("after a failed handover: %+v, want not leading, holding off", st)
	}
	b.mu.Lock()
	resigns := b.resigns
	b.mu.Unlock()
	if resigns == 0 {
		t.Error("the candidacy was not released after the failed handover")
	}
	if strings.Contains(logs.String(), "illegal state transition") {
		t.Errorf("illegal transition logged:\n%s", logs)
	}
}
