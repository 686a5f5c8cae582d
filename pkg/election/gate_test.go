package election

import (
	"sync"
	"testing"
	"testing/synctest"
)

// fakeGate is a Gate whose verdict the test sets.
type fakeGate struct {
	mu      sync.Mutex
	el      Eligibility
	changed chan struct{}
}

func newFakeGate(el Eligibility) *fakeGate { return &fakeGate{el: el, changed: make(chan struct{})} }

func (g *fakeGate) Eligibility() (Eligibility, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.el, g.changed
}

func (g *fakeGate) set(el Eligibility) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.el = el
	close(g.changed)
	g.changed = make(chan struct{})
}

var (
	healthy   = Eligibility{Eligible: true, Health: "healthy"}
	unhealthy = Eligibility{Health: "unhealthy", Reason: "3 consecutive failed checks"}
)

// recordingMetrics records step-down reasons.
type recordingMetrics struct {
	nopMetrics
	mu      sync.Mutex
	reasons []StepDownReason
}

func (m *recordingMetrics) SteppedDown(r StepDownReason) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reasons = append(m.reasons, r)
}

func TestGateClosedAtStartStandsAside(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newFakeGate(Eligibility{Health: "unknown", Reason: "no check has passed yet"})
		fx := newFixture(t, func(c *Config) { c.Gate = gate })
		st := fx.status()
		if st.State != StateStandingAside || st.Health != "unknown" || st.NotStanding != "no check has passed yet" {
			t.Fatalf("with the gate closed: %+v", st)
		}
		// It holds no candidacy: a win offered now finds nobody campaigning.
		select {
		case fx.b.wins <- campaignResult{term: Term{Token: 1}}:
			t.Fatal("a candidate that may not stand campaigned")
		default:
		}
		if err := fx.e.Resign(t.Context()); err != ErrNotLeader {
			t.Errorf("Resign while standing aside = %v, want ErrNotLeader", err)
		}

		gate.set(healthy)
		synctest.Wait()
		st = fx.status()
		if st.State != StateCampaigning || st.Health != "healthy" || st.NotStanding != "" {
			t.Fatalf("after the gate opened: %+v", st)
		}
		fx.lead(7)
	})
}

func TestGateClosingMakesTheLeaderResignAfterItsWorkStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newFakeGate(healthy)
		m := &recordingMetrics{}
		var fx *fixture
		var seenInRelease []Status
		var resignsInRelease []int
		fx = newFixture(t, func(c *Config) {
			c.Gate = gate
			c.Metrics = m
			c.BeforeRelease = func() {
				// The step-down is published before the release waits.
				st, _ := fx.e.Status()
				seenInRelease = append(seenInRelease, st)
				fx.b.mu.Lock()
				defer fx.b.mu.Unlock()
				resignsInRelease = append(resignsInRelease, fx.b.resigns)
			}
		})
		fx.lead(3)

		gate.set(unhealthy)
		synctest.Wait()
		st := fx.status()
		if st.IsLeader || st.State != StateStandingAside || st.NotStanding != unhealthy.Reason || st.Health != "unhealthy" {
			t.Fatalf("after the gate closed while leading: %+v", st)
		}
		if len(seenInRelease) != 1 || seenInRelease[0].IsLeader || resignsInRelease[0] != 0 {
			t.Errorf("BeforeRelease saw %+v after %v resigns, want one call after the step-down and before the release",
				seenInRelease, resignsInRelease)
		}
		fx.b.mu.Lock()
		resigns := fx.b.resigns
		fx.b.mu.Unlock()
		if resigns != 1 {
			t.Errorf("resigns = %d, want 1 (a standby takes over at once)", resigns)
		}
		m.mu.Lock()
		reasons := append([]StepDownReason(nil), m.reasons...)
		m.mu.Unlock()
		if len(reasons) != 1 || reasons[0] != ReasonUnhealthy {
			t.Errorf("step-down reasons = %v, want [unhealthy]", reasons)
		}

		// Recovery: it stands again at once.
		gate.set(healthy)
		synctest.Wait()
		if st := fx.status(); st.State != StateCampaigning {
			t.Fatalf("after recovery: %+v", st)
		}
		fx.lead(4)
	})
}

func TestGateClosingMakesACandidateLeaveTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newFakeGate(healthy)
		released := 0
		fx := newFixture(t, func(c *Config) {
			c.Gate = gate
			c.BeforeRelease = func() { released++ }
		})
		fx.b.observed(Leader{ID: "b", Token: 2})
		synctest.Wait()
		if st := fx.status(); st.State != StateFollowing {
			t.Fatalf("before: %+v", st)
		}
		gate.set(unhealthy)
		synctest.Wait()
		if st := fx.status(); st.State != StateStandingAside || st.Leader != "b" {
			t.Fatalf("after the gate closed: %+v", st)
		}
		fx.b.mu.Lock()
		resigns := fx.b.resigns
		fx.b.mu.Unlock()
		if resigns != 1 {
			t.Errorf("resigns = %d, want 1: the candidacy leaves the queue", resigns)
		}
		if released != 0 {
			t.Errorf("BeforeRelease ran %d times for a candidacy that never led", released)
		}
	})
}

func TestHealthWordChangesArePublishedWhileLeading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newFakeGate(healthy)
		fx := newFixture(t, func(c *Config) { c.Gate = gate })
		fx.lead(5)
		gate.set(Eligibility{Eligible: true, Health: "degraded"})
		synctest.Wait()
		if st := fx.status(); !st.IsLeader || st.Health != "degraded" {
			t.Fatalf("%+v", st)
		}
	})
}
