package election

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scripted is a backend whose calls the test controls. Real-server
// behaviour is tested in the backend packages; this tests the engine's logic.
type scripted struct {
	ttl  time.Duration
	wins chan int64 // a token sent here lets the pending Campaign win

	mu        sync.Mutex
	hangRenew bool      // Renew blocks until its context ends
	lastAck   time.Time // send time of the last acknowledged renewal
	resigns   int
	hangResig bool
}

func newScripted(ttl time.Duration) *scripted {
	return &scripted{ttl: ttl, wins: make(chan int64)}
}

func (s *scripted) Name() string { return "scripted" }
func (s *scripted) Close() error { return nil }

func (s *scripted) Candidate(ctx context.Context) (Candidacy, Validity, error) {
	now := time.Now()
	s.mu.Lock()
	s.lastAck = now
	s.mu.Unlock()
	return s, Validity{Sent: now, TTL: s.ttl}, nil
}

func (s *scripted) Observe(ctx context.Context, fn func(Leader)) error {
	fn(Leader{})
	<-ctx.Done()
	return ctx.Err()
}

func (s *scripted) Campaign(ctx context.Context) (Term, error) {
	select {
	case tok := <-s.wins:
		return Term{Token: tok, Validity: Validity{Sent: time.Now(), TTL: s.ttl}}, nil
	case <-ctx.Done():
		return Term{}, ctx.Err()
	}
}

func (s *scripted) Renew(ctx context.Context) (Validity, error) {
	s.mu.Lock()
	hang := s.hangRenew
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return Validity{}, ctx.Err()
	}
	now := time.Now()
	s.mu.Lock()
	s.lastAck = now
	s.mu.Unlock()
	return Validity{Sent: now, TTL: s.ttl}, nil
}

func (s *scripted) Resign(ctx context.Context) error {
	s.mu.Lock()
	s.resigns++
	hang := s.hangResig
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func start(t *testing.T, cfg Config) (*Engine, func()) {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return e, stop
}

func waitFor(t *testing.T, e *Engine, what string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		st, changed := e.Status()
		if ok(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; status %+v", what, st)
		}
	}
}

// The safety rule: with renewals hanging, leadership is given up before
// the last acknowledged renewal's send time plus the TTL.
func TestStepsDownBeforeLeaseCouldExpireWhenBackendHangs(t *testing.T) {
	b := newScripted(3 * time.Second)
	e, _ := start(t, Config{Election: "e", Identity: "a", Backend: b, TTL: 3 * time.Second,
		Margin: time.Second, RenewInterval: 500 * time.Millisecond})
	b.wins <- 7
	st := waitFor(t, e, "leadership", func(s Status) bool { return s.IsLeader })
	if st.FencingToken != 7 || st.Leader != "a" {
		t.Fatalf("leader status %+v", st)
	}
	b.mu.Lock()
	b.hangRenew = true
	b.mu.Unlock()

	waitFor(t, e, "step-down", func(s Status) bool { return !s.IsLeader })
	steppedDown := time.Now()
	b.mu.Lock()
	expiry := b.lastAck.Add(b.ttl)
	b.mu.Unlock()
	if !steppedDown.Before(expiry) {
		t.Fatalf("stepped down %v after the lease could have expired", steppedDown.Sub(expiry))
	}
	if st, _ := e.Status(); st.Leader == "a" || st.FencingToken != 0 {
		t.Errorf("after stepping down the status still names us: %+v", st)
	}
}

// On shutdown the status flips before the resignation, which may hang
// (backend unreachable) and is bounded by ResignTimeout.
func TestShutdownStopsClaimingBeforeResigning(t *testing.T) {
	b := newScripted(10 * time.Second)
	b.hangResig = true
	e, stop := start(t, Config{Election: "e", Identity: "a", Backend: b, ResignTimeout: 200 * time.Millisecond})
	b.wins <- 1
	waitFor(t, e, "leadership", func(s Status) bool { return s.IsLeader })

	flipped := make(chan time.Time, 1)
	go func() {
		for {
			st, changed := e.Status()
			if !st.IsLeader {
				flipped <- time.Now()
				return
			}
			<-changed
		}
	}()
	stop()
	returned := time.Now()
	select {
	case at := <-flipped:
		if at.After(returned) {
			t.Errorf("status flipped after Run returned")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("status never flipped")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.resigns == 0 {
		t.Error("shutdown did not resign")
	}
}

func TestResignOnRequest(t *testing.T) {
	b := newScripted(10 * time.Second)
	e, _ := start(t, Config{Election: "e", Identity: "a", Backend: b, ResignHoldoff: 50 * time.Millisecond})
	if err := e.Resign(t.Context()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("resign as follower: %v, want ErrNotLeader", err)
	}
	b.wins <- 1
	waitFor(t, e, "leadership", func(s Status) bool { return s.IsLeader })
	if err := e.Resign(t.Context()); err != nil {
		t.Fatalf("resign: %v", err)
	}
	if st, _ := e.Status(); st.IsLeader {
		t.Fatal("still leader after Resign returned")
	}
	// It campaigns again after the hold-off.
	b.wins <- 2
	st := waitFor(t, e, "leadership again", func(s Status) bool { return s.IsLeader })
	if st.FencingToken != 2 {
		t.Errorf("token %d, want 2", st.FencingToken)
	}
}

func TestConfigValidation(t *testing.T) {
	b := newScripted(time.Second)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no election", Config{Identity: "a", Backend: b}, "Election is required"},
		{"no identity", Config{Election: "e", Backend: b}, "Identity is required"},
		{"no backend", Config{Election: "e", Identity: "a"}, "backend is required"},
		{"drift", Config{Election: "e", Identity: "a", Backend: b, Drift: 0.6}, "drift"},
		{"margin eats ttl", Config{Election: "e", Identity: "a", Backend: b, TTL: 2 * time.Second, Margin: 1500 * time.Millisecond}, "validity window"},
		{"slow renew", Config{Election: "e", Identity: "a", Backend: b, TTL: 2 * time.Second, RenewInterval: time.Second}, "twice the renew interval"},
		{"negative", Config{Election: "e", Identity: "a", Backend: b, Margin: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Election: "e", Identity: "a", Backend: b, TTL: 2 * time.Second}); err != nil {
		t.Fatalf("the minimum etcd TTL with defaults must be valid: %v", err)
	}
}

// Readers of Status run concurrently with renewals that move the deadline;
// the race detector fails this test if the deadline is shared unsafely.
func TestStatusIsSafeToReadWhileRenewing(t *testing.T) {
	b := newScripted(3 * time.Second)
	e, _ := start(t, Config{Election: "e", Identity: "a", Backend: b, TTL: 3 * time.Second, RenewInterval: 5 * time.Millisecond})
	b.wins <- 1
	waitFor(t, e, "leadership", func(s Status) bool { return s.IsLeader })
	b.mu.Lock()
	first := b.lastAck
	b.mu.Unlock()
	for {
		if st, _ := e.Status(); !st.IsLeader {
			t.Fatal("lost leadership while renewals succeed")
		}
		b.mu.Lock()
		renewed := b.lastAck.Sub(first)
		b.mu.Unlock()
		if renewed > 200*time.Millisecond {
			return
		}
	}
}

// Between candidacies (the hold-off after a resign, a retry backoff) there
// is nothing to resign, and saying so must not wait for the next candidacy.
func TestResignBetweenCandidaciesIsNotLeader(t *testing.T) {
	b := newScripted(10 * time.Second)
	e, _ := start(t, Config{Election: "e", Identity: "a", Backend: b, ResignHoldoff: time.Hour})
	b.wins <- 1
	waitFor(t, e, "leadership", func(s Status) bool { return s.IsLeader })
	if err := e.Resign(t.Context()); err != nil {
		t.Fatalf("resign: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.Resign(ctx); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("resign during the hold-off: %v, want ErrNotLeader", err)
	}
}
