package election

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// The engine's transitions on fake time (testing/synctest): every case
// runs in a bubble whose clock only moves when every goroutine waits, so
// deadlines are checked to the nanosecond and the whole table runs in
// milliseconds.

const fakeTTL = 10 * time.Second

// fakeBackend is a backend whose answers the test gives: campaign results
// and observed leaders through channels, renewals and grants by mode.
type fakeBackend struct {
	wins    chan campaignResult
	leaders chan Leader
	obsErrs chan error

	mu        sync.Mutex
	grantErr  error
	grantZero bool // grants prove nothing (Redis holds nothing until it wins)
	renewErr  error
	renewHang bool
	renewHook func() // runs inside Renew, after the request is "sent"
	resigns   int
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{wins: make(chan campaignResult), leaders: make(chan Leader), obsErrs: make(chan error)}
}

func (f *fakeBackend) Name() string { return "fake" }
func (f *fakeBackend) Close() error { return nil }

func (f *fakeBackend) set(fn func(f *fakeBackend)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBackend) Candidate(ctx context.Context) (Candidacy, Validity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.grantErr != nil {
		return nil, Validity{}, f.grantErr
	}
	if f.grantZero {
		return f, Validity{}, nil
	}
	return f, Validity{Sent: time.Now(), TTL: fakeTTL}, nil
}

func (f *fakeBackend) Observe(ctx context.Context, fn func(Leader)) error {
	for {
		select {
		case l := <-f.leaders:
			fn(l)
		case err := <-f.obsErrs:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeBackend) Campaign(ctx context.Context) (Term, error) {
	select {
	case r := <-f.wins:
		return r.term, r.err
	case <-ctx.Done():
		return Term{}, ctx.Err()
	}
}

func (f *fakeBackend) Renew(ctx context.Context) (Validity, error) {
	f.mu.Lock()
	hang, err, hook := f.renewHang, f.renewErr, f.renewHook
	f.mu.Unlock()
	sent := time.Now()
	if hook != nil {
		hook()
	}
	switch {
	case hang:
		<-ctx.Done()
		return Validity{}, ctx.Err()
	case err != nil:
		return Validity{}, err
	}
	return Validity{Sent: sent, TTL: fakeTTL}, nil
}

func (f *fakeBackend) Resign(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resigns++
	return nil
}

// win lets the pending Campaign win token, with a validity sent now.
func (f *fakeBackend) win(token int64) {
	f.wins <- campaignResult{term: Term{Token: token, Validity: Validity{Sent: time.Now(), TTL: fakeTTL}}}
}

// fixture is one engine in a bubble, recording every status it publishes.
type fixture struct {
	t     *testing.T
	clock *fakeClock
	e     *Engine
	b     *fakeBackend
	logs  *countingHandler
	stop  func() // ends Run and waits for it

	mu      sync.Mutex
	history []Status
}

func newFixture(t *testing.T, mod ...func(*Config)) *fixture {
	t.Helper()
	fx := &fixture{t: t, b: newFakeBackend(), logs: &countingHandler{}, clock: &fakeClock{}}
	cfg := Config{Election: "e", Identity: "a", Backend: fx.b, TTL: fakeTTL,
		Logger: slog.New(fx.logs), OnStatus: fx.record, Clock: fx.clock}
	for _, m := range mod {
		m(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fx.e = e
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx)
	}()
	var once sync.Once
	fx.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(func() {
		fx.stop()
		fx.checkTransitions()
	})
	synctest.Wait()
	return fx
}

// fakeClock is a Clock whose suspended time the test sets: the bubble's
// fake time stands still during a "suspend", as CLOCK_MONOTONIC does.
type fakeClock struct{ suspended atomic.Int64 }

func (c *fakeClock) Suspended() time.Duration { return time.Duration(c.suspended.Load()) }

// suspend simulates the machine waking from a suspend of d.
func (c *fakeClock) suspend(d time.Duration) { c.suspended.Add(int64(d)) }

func (fx *fixture) record(s Status) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	fx.history = append(fx.history, s)
}

// checkTransitions fails the test if any published state change is not an
// edge of the transition table.
func (fx *fixture) checkTransitions() {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	prev := StateStopped
	for _, s := range fx.history {
		if !canPublish(prev, s.State) {
			fx.t.Errorf("published %v → %v, which the transition table does not allow", prev, s.State)
		}
		prev = s.State
	}
	if fx.logs.count(slog.LevelError) > 0 {
		fx.t.Errorf("the engine logged an error (an illegal transition?)")
	}
}

// canPublish is CanTransition as seen through Status: Following is
// Campaigning with a leader known.
func canPublish(from, to State) bool {
	norm := func(s State) State {
		if s == StateFollowing {
			return StateCampaigning
		}
		return s
	}
	return CanTransition(norm(from), norm(to))
}

func (fx *fixture) status() Status {
	st, _ := fx.e.Status()
	return st
}

// lead makes the engine win token and checks that it leads.
func (fx *fixture) lead(token int64) time.Time {
	fx.t.Helper()
	fx.b.observed(Leader{})
	fx.b.win(token)
	synctest.Wait()
	if st := fx.status(); !st.IsLeader || st.FencingToken != token || st.State != StateLeading {
		fx.t.Fatalf("after winning: %+v", st)
	}
	return time.Now()
}

func (f *fakeBackend) observed(l Leader) { f.leaders <- l }

// countingHandler counts log records by level and message.
type countingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func (h *countingHandler) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if r.Level == level {
			n++
		}
	}
	return n
}

// validityAfter is how long after an acknowledged send the engine claims.
var validityAfter = Config{TTL: fakeTTL}.withDefaults().validity(fakeTTL)

func TestTransitions(t *testing.T) {
	errDown := errors.New("connection refused")
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"deadline passes with no renewal", func(t *testing.T) {
			fx := newFixture(t)
			fx.b.set(func(f *fakeBackend) { f.renewHang = true })
			won := fx.lead(1)
			time.Sleep(validityAfter - time.Nanosecond)
			if !fx.status().IsLeader {
				t.Fatalf("stepped down %v before its deadline", won.Add(validityAfter).Sub(time.Now()))
			}
			time.Sleep(time.Nanosecond)
			synctest.Wait()
			if st := fx.status(); st.IsLeader || st.Leader != "" {
				t.Fatalf("at the deadline: %+v, want not leading and no leader named", st)
			}
			if got := time.Since(won); got != validityAfter {
				t.Fatalf("stepped down %v after winning, want exactly %v", got, validityAfter)
			}
		}},
		{"renewals keep it leading", func(t *testing.T) {
			fx := newFixture(t)
			fx.lead(1)
			time.Sleep(5 * fakeTTL)
			synctest.Wait()
			if st := fx.status(); !st.IsLeader || st.FencingToken != 1 {
				t.Fatalf("after five TTLs of renewals: %+v", st)
			}
		}},
		{"renewal returns lost", func(t *testing.T) {
			fx := newFixture(t)
			fx.lead(1)
			fx.b.set(func(f *fakeBackend) { f.renewErr = ErrLost })
			cfg := fx.e.cfg
			time.Sleep(cfg.RenewInterval)
			synctest.Wait()
			if st := fx.status(); st.IsLeader || st.State != StateCampaigning {
				t.Fatalf("after a lost renewal: %+v, want campaigning again", st)
			}
		}},
		{"a newer term observed", func(t *testing.T) {
			fx := newFixture(t)
			fx.lead(5)
			fx.b.observed(Leader{ID: "b", Token: 9})
			synctest.Wait()
			if st := fx.status(); st.IsLeader || st.Leader != "b" || st.State != StateFollowing {
				t.Fatalf("after a newer term: %+v, want following b", st)
			}
		}},
		{"campaign error backs off", func(t *testing.T) {
			fx := newFixture(t)
			fx.b.observed(Leader{ID: "b", Token: 3})
			synctest.Wait()
			if st := fx.status(); !st.Ready || st.State != StateFollowing {
				t.Fatalf("before the error: %+v", st)
			}
			fx.b.set(func(f *fakeBackend) { f.grantErr = errDown })
			fx.b.wins <- campaignResult{err: errDown}
			synctest.Wait()
			st := fx.status()
			if st.Ready || st.Leader != "" || st.State != StateBackingOff || st.Problem != ProblemUnreachable {
				t.Fatalf("after a campaign error: %+v, want backing off, not ready, no leader", st)
			}
			// Retries back off; the failure is logged once, not per retry.
			time.Sleep(10 * fakeTTL)
			synctest.Wait()
			if n := fx.logs.count(slog.LevelWarn); n != 1 {
				t.Errorf("%d warnings over ten TTLs of failures, want 1", n)
			}
			fx.b.set(func(f *fakeBackend) { f.grantErr = nil })
			time.Sleep(fx.e.cfg.RetryMax)
			synctest.Wait()
			if st := fx.status(); !st.Ready || st.Leader != "b" || st.Problem != "" {
				t.Fatalf("after the backend recovered: %+v, want following b again", st)
			}
		}},
		{"win after the deadline", func(t *testing.T) {
			fx := newFixture(t)
			fx.b.set(func(f *fakeBackend) { f.renewHang, f.grantZero = true, true })
			stale := Validity{Sent: time.Now(), TTL: fakeTTL}
			time.Sleep(fakeTTL)
			fx.b.wins <- campaignResult{term: Term{Token: 4, Validity: stale}}
			synctest.Wait()
			for _, s := range fx.history {
				if s.IsLeader {
					t.Fatalf("claimed leadership with a validity that had expired: %+v", s)
				}
			}
		}},
		{"observer failure makes a follower not ready", func(t *testing.T) {
			fx := newFixture(t)
			fx.b.observed(Leader{ID: "b", Token: 3})
			synctest.Wait()
			fx.b.obsErrs <- errDown
			synctest.Wait()
			if st := fx.status(); st.Ready || st.Leader != "" || st.Problem != ProblemUnreachable {
				t.Fatalf("after the observer failed: %+v, want not ready and no leader named", st)
			}
			time.Sleep(fx.e.cfg.RetryMax)
			fx.b.observed(Leader{ID: "b", Token: 3})
			synctest.Wait()
			if st := fx.status(); !st.Ready || st.Leader != "b" {
				t.Fatalf("after the observer recovered: %+v", st)
			}
		}},
		{"resign during the hold-off", func(t *testing.T) {
			fx := newFixture(t)
			fx.lead(1)
			if err := fx.e.Resign(t.Context()); err != nil {
				t.Fatal(err)
			}
			if st := fx.status(); st.State != StateHoldingOff {
				t.Fatalf("after resigning: %v, want holding-off", st.State)
			}
			before := time.Now()
			if err := fx.e.Resign(t.Context()); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("resign during the hold-off = %v, want ErrNotLeader", err)
			}
			if time.Since(before) != 0 {
				t.Fatal("resign during the hold-off waited")
			}
			time.Sleep(fx.e.cfg.ResignHoldoff)
			synctest.Wait()
			if st := fx.status(); st.State != StateCampaigning {
				t.Fatalf("after the hold-off: %v, want campaigning", st.State)
			}
		}},
		{"resign after stepping down with the backend unreachable", func(t *testing.T) {
			fx := newFixture(t)
			fx.b.set(func(f *fakeBackend) { f.renewHang, f.grantErr = true, errDown })
			fx.lead(1)
			time.Sleep(validityAfter)
			synctest.Wait()
			before := time.Now()
			if err := fx.e.Resign(t.Context()); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("resign after the step-down = %v, want ErrNotLeader", err)
			}
			if time.Since(before) != 0 {
				t.Fatal("resign after the step-down waited")
			}
		}},
		{"permission denied is shown and logged once", func(t *testing.T) {
			fx := newFixture(t)
			denied := errors.Join(ErrDenied, errors.New("etcdserver: permission denied"))
			fx.b.set(func(f *fakeBackend) { f.grantErr = denied })
			fx.b.wins <- campaignResult{err: denied}
			time.Sleep(10 * fakeTTL)
			synctest.Wait()
			if st := fx.status(); st.Problem != ProblemDenied || st.Ready {
				t.Fatalf("status %+v, want problem %q and not ready", st, ProblemDenied)
			}
			if n := fx.logs.count(slog.LevelWarn); n != 1 {
				t.Errorf("%d warnings, want one per change", n)
			}
		}},
		{"duplicate identity", func(t *testing.T) {
			fx := newFixture(t)
			fx.b.observed(Leader{ID: "a", Token: 8}) // our name, not our term
			synctest.Wait()
			time.Sleep(fx.e.cfg.DuplicateAfter - time.Nanosecond)
			synctest.Wait()
			if fx.status().DuplicateIdentity {
				t.Fatal("reported a twin before DuplicateAfter")
			}
			time.Sleep(time.Nanosecond)
			synctest.Wait()
			if st := fx.status(); !st.DuplicateIdentity || st.Leader != "" {
				t.Fatalf("status %+v, want a duplicate identity and no leader named", st)
			}
			fx.b.observed(Leader{ID: "b", Token: 9})
			synctest.Wait()
			if st := fx.status(); st.DuplicateIdentity {
				t.Fatalf("status %+v: the twin is gone", st)
			}
		}},
		{"shutdown while leading", func(t *testing.T) {
			fx := newFixture(t)
			fx.lead(1)
			fx.stop()
			if st := fx.status(); st.IsLeader || st.State != StateStopped {
				t.Fatalf("after shutdown: %+v, want stopped and not leading", st)
			}
			fx.b.mu.Lock()
			defer fx.b.mu.Unlock()
			if fx.b.resigns != 1 {
				t.Fatalf("%d backend resigns on shutdown, want 1", fx.b.resigns)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { synctest.Test(t, tt.run) })
	}
}
