package httpapi

import (
	"context"
	"sync"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// fakeElector is an Elector driven by the test.
type fakeElector struct {
	mu        sync.Mutex
	st        election.Status
	changed   chan struct{}
	healthy   bool
	resignErr error // returned by Resign instead of resigning, when set
	resigns   int
}

func newFake(st election.Status) *fakeElector {
	return &fakeElector{st: st, changed: make(chan struct{}), healthy: true}
}

func (f *fakeElector) Status() (election.Status, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, f.changed
}

// update changes the status and wakes watchers.
func (f *fakeElector) update(fn func(*election.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeElector) Resign(ctx context.Context) error {
	f.mu.Lock()
	f.resigns++
	err := f.resignErr
	leading := f.st.IsLeader
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if !leading {
		return election.ErrNotLeader
	}
	f.update(func(st *election.Status) {
		st.IsLeader = false
		st.Leader = ""
		st.FencingToken = 0
	})
	return nil
}

func (f *fakeElector) Healthy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthy
}

func (f *fakeElector) setHealthy(h bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthy = h
}

func (f *fakeElector) resignCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resigns
}
