package election

import (
	"context"
	"sync"
	"testing"
	"time"
)

// generational is a handing backend that implements Generations, driven
// by the test.
type generational struct {
	*handing
	gmu        sync.Mutex
	queue      chan struct{} // receiving lets WaitNewer call queued
	newer      chan struct{} // receiving makes WaitNewer report a newer one
	waits      int
	candidates int
	successor  string
}

func newGenerational() *generational {
	b := newScripted(10 * time.Second)
	return &generational{handing: &handing{scripted: b}, queue: make(chan struct{}), newer: make(chan struct{})}
}

func (g *generational) Candidate(ctx context.Context) (Candidacy, Validity, error) {
	g.gmu.Lock()
	g.candidates++
	g.gmu.Unlock()
	return g.scripted.Candidate(ctx)
}

func (g *generational) WaitNewer(ctx context.Context, cand Candidacy, gen int64, queued func()) error {
	g.gmu.Lock()
	g.waits++
	g.gmu.Unlock()
	select {
	case <-g.queue:
		queued()
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-g.newer:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *generational) NewerSuccessor(ctx context.Context, cand Candidacy, gen int64) (string, error) {
	g.gmu.Lock()
	defer g.gmu.Unlock()
	return g.successor, nil
}

func (g *generational) count() (waits, candidates int) {
	g.gmu.Lock()
	defer g.gmu.Unlock()
	return g.waits, g.candidates
}

// A waiting candidate reads ready only once it is in line with its
// generation published, so a rollout never stops the old leader before
// the new pod can succeed it.
func TestGenerationsGateReadiness(t *testing.T) {
	g := newGenerational()
	e, _ := start(t, Config{Election: "e", Identity: "a", Backend: g, Generation: 1})
	waitFor(t, e, "campaigning", func(s Status) bool { return s.State == StateCampaigning })
	if st, _ := e.Status(); st.Ready {
		t.Fatalf("ready before being queued: %+v", st)
	}
	g.queue <- struct{}{}
	waitFor(t, e, "ready once queued", func(s Status) bool { return s.Ready })
}

// A newer generation queued behind a waiting candidate makes it start a
// fresh candidacy (behind the newer one).
func TestNewerGenerationRequeues(t *testing.T) {
	g := newGenerational()
	e, _ := start(t, Config{Election: "e", Identity: "a", Backend: g, Generation: 1})
	g.queue <- struct{}{}
	waitFor(t, e, "ready", func(s Status) bool { return s.Ready })
	g.newer <- struct{}{}
	// The second candidacy's WaitNewer asks to be let into line again.
	g.queue <- struct{}{}
	if _, n := g.count(); n != 2 {
		t.Fatalf("%d candidacies, want a second one after a newer generation appeared", n)
	}
	g.b().mu.Lock()
	resigns := g.b().resigns
	g.b().mu.Unlock()
	if resigns != 1 {
		t.Errorf("%d resignations, want the first candidacy released once", resigns)
	}
}

// A leader never steps back for a newer generation; when it stops, it hands
// over to the newest generation in line.
func TestLeaderHandsOverToTheNewestGenerationAtShutdown(t *testing.T) {
	g := newGenerational()
	g.successor = "new-0"
	e, stop := start(t, Config{Election: "e", Identity: "a", Backend: g, Generation: 1})
	g.queue <- struct{}{}
	g.b().wins <- 3
	waitFor(t, e, "leadership", func(s Status) bool { return s.IsLeader })
	stop()
	g.handing.mu.Lock()
	handed := append([]string(nil), g.handing.handed...)
	g.handing.mu.Unlock()
	if len(handed) != 1 || handed[0] != "new-0" {
		t.Fatalf("handed over to %q at shutdown, want [new-0]", handed)
	}
}

// Without a generation nothing changes: no generation watch, and ready as
// soon as the backend answers.
func TestNoGenerationChangesNothing(t *testing.T) {
	g := newGenerational()
	e, _ := start(t, Config{Election: "e", Identity: "a", Backend: g})
	waitFor(t, e, "ready", func(s Status) bool { return s.Ready })
	if w, _ := g.count(); w != 0 {
		t.Errorf("WaitNewer called %d times without a generation", w)
	}
}

func (g *generational) b() *scripted { return g.handing.scripted }
