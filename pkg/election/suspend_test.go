package election

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// A machine that is suspended does not advance CLOCK_MONOTONIC, on which Go's
// timers and time.Since run, while the lease on the backend keeps expiring.
// These tests simulate a wake from a suspend: the bubble's fake time stands
// still while the fake Clock's suspended time jumps.

// A leader that wakes from a suspend longer than its lease must not claim
// leadership for a moment longer: readers see the step-down at once, and the
// loop publishes it within one check interval although its deadline timer,
// on the monotonic clock, has not fired.
func TestSuspendLongerThanTheLeaseEndsLeadership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t)
		fx.lead(1)
		time.Sleep(time.Second)
		synctest.Wait()

		fx.b.set(func(f *fakeBackend) { f.renewHang = true }) // the lease is gone on the server
		fx.clock.suspend(2 * fakeTTL)
		if st := fx.status(); st.IsLeader || st.Leader != "" || st.FencingToken != 0 {
			t.Fatalf("right after waking: %+v, want not leading", st)
		}
		time.Sleep(maxCheckInterval)
		synctest.Wait()
		fx.mu.Lock()
		last := fx.history[len(fx.history)-1]
		fx.mu.Unlock()
		if last.IsLeader || last.State == StateLeading {
			t.Fatalf("published %+v one check interval after waking, want the step-down", last)
		}
	})
}

// A renewal in flight across a suspend proves nothing past the suspend: its
// request was sent before it, so the lease may have expired meanwhile.
func TestRenewalInFlightAcrossASuspendDoesNotExtend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t)
		fx.lead(1)
		var once atomic.Bool
		fx.b.set(func(f *fakeBackend) {
			f.renewHook = func() {
				if once.CompareAndSwap(false, true) {
					fx.clock.suspend(2 * fakeTTL)
				}
			}
		})
		// The first renewal is sent after RenewInterval; its answer arrives
		// after the suspend.
		time.Sleep(fakeTTL / 3)
		synctest.Wait()
		if !once.Load() {
			t.Fatal("no renewal was sent")
		}
		if st := fx.status(); st.IsLeader {
			t.Fatalf("after a renewal that straddled a %v suspend: %+v, want not leading", 2*fakeTTL, st)
		}
	})
}

// Suspends shorter than the remaining validity only shorten it.
func TestShortSuspendShortensTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t)
		fx.b.set(func(f *fakeBackend) { f.renewHang = true })
		won := fx.lead(1)
		fx.clock.suspend(2 * time.Second)
		time.Sleep(validityAfter - 2*time.Second - time.Nanosecond)
		if !fx.status().IsLeader {
			t.Fatal("stepped down before the shortened deadline")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if fx.status().IsLeader {
			t.Fatalf("still leading %v after winning, with 2s suspended: want a step-down at %v",
				time.Since(won), validityAfter-2*time.Second)
		}
	})
}

// Healthy reports a status path that is stuck (here an OnStatus hook that
// blocks, holding the status lock) even though the loop goroutine exists:
// a liveness probe can then restart the process. Real time: a goroutine
// blocked on a mutex stops a synctest bubble's clock.
func TestHealthyReportsAStuckStatusPath(t *testing.T) {
	var block atomic.Bool
	release := make(chan struct{})
	b := newFakeBackend()
	e, err := New(Config{
		Election: "e", Identity: "a", Backend: b, TTL: 2 * time.Second,
		ResignTimeout: 100 * time.Millisecond, Clock: &fakeClock{},
		OnStatus: func(Status) {
			if block.Load() {
				<-release
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitUntil(t, e.Healthy, "healthy after start")
	block.Store(true)
	go b.observed(Leader{ID: "b", Token: 3}) // a status change: the hook blocks
	waitUntil(t, func() bool { return !e.Healthy() }, "unhealthy while the status path is stuck")
	block.Store(false)
	close(release)
	waitUntil(t, e.Healthy, "healthy again once the status path moves")
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 60s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The step-down reaches readers at the deadline even when the status path
// is stuck: here the OnStatus hook (an audit history on a pipe nobody
// drains) blocks the step-down's own publication, yet a function run
// WhileLeading is cancelled at the deadline and Status reads not-leader.
// Real time: a goroutine blocked on a mutex stops a synctest bubble's clock.
func TestDeadlineReachesReadersWhileAWriterIsStuck(t *testing.T) {
	var stuck atomic.Bool
	release := make(chan struct{})
	b := newFakeBackend()
	b.set(func(f *fakeBackend) { f.grantZero = true }) // only the win proves anything
	const ttl = 2 * time.Second
	e, err := New(Config{
		Election: "e", Identity: "a", Backend: b, TTL: ttl, Clock: &fakeClock{},
		ResignTimeout: 100 * time.Millisecond,
		OnStatus: func(Status) {
			if stuck.Load() {
				<-release
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); close(release); <-done }()

	cancelled := make(chan struct{})
	started := make(chan struct{})
	go WhileLeading(ctx, e, func(tctx context.Context, _ Status) {
		close(started)
		<-tctx.Done()
		close(cancelled)
		<-ctx.Done() // one term only
	})
	b.set(func(f *fakeBackend) { f.renewHang = true })
	b.observed(Leader{})
	b.wins <- campaignResult{term: Term{Token: 1, Validity: Validity{Sent: time.Now(), TTL: ttl}}}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("never led")
	}
	stuck.Store(true) // from now on every status write blocks
	t0 := time.Now()
	select {
	case <-cancelled:
	case <-time.After(30 * time.Second):
		t.Fatal("the work run while leading was not cancelled at the deadline")
	}
	t.Logf("cancelled %v after the status path got stuck", time.Since(t0))
	if st, _ := e.Status(); st.IsLeader {
		t.Fatalf("after the deadline: %+v", st)
	}
}
