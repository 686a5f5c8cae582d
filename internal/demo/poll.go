package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// target is an instance to poll.
type target struct {
	ID   string
	Addr string // host:port of its HTTP API
}

// monitor polls every instance's GET /status at a fixed interval, hands
// each poll to a callback and lets the script wait for a condition.
type monitor struct {
	client   *http.Client
	interval time.Duration
	onPoll   func(snapshot)

	mu      sync.Mutex
	targets []target
	latest  snapshot
	polled  chan struct{} // closed and replaced after every poll
}

func newMonitor(targets []target, interval time.Duration, onPoll func(snapshot)) *monitor {
	return &monitor{
		// A request may take up to a few polls; a dead instance refuses
		// at once, a hung one must not stall the timeline for long.
		client:   &http.Client{Timeout: 250 * time.Millisecond, Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		targets:  targets,
		interval: interval,
		onPoll:   onPoll,
		polled:   make(chan struct{}),
	}
}

// run polls until ctx ends.
func (m *monitor) run(ctx context.Context) {
	defer m.client.CloseIdleConnections()
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		s := m.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if m.onPoll != nil {
			m.onPoll(s)
		}
		m.mu.Lock()
		m.latest = s
		close(m.polled)
		m.polled = make(chan struct{})
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setTarget replaces the i-th instance, e.g. a sidecar started again on a
// new port.
func (m *monitor) setTarget(i int, tg target) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.targets[i] = tg
}

// poll asks every instance at once.
func (m *monitor) poll(ctx context.Context) snapshot {
	m.mu.Lock()
	targets := slices.Clone(m.targets)
	m.mu.Unlock()
	s := snapshot{Start: time.Now(), Views: make([]view, len(targets))}
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() {
			st, err := fetchStatus(ctx, m.client, tg.Addr)
			s.Views[i] = view{ID: tg.ID, Addr: tg.Addr, Up: err == nil, At: time.Now(), St: st}
		})
	}
	wg.Wait()
	return s
}

// wait returns the first poll that began at or after since and satisfies
// cond.
func (m *monitor) wait(ctx context.Context, since time.Time, cond func(snapshot) bool) (snapshot, error) {
	for {
		m.mu.Lock()
		s, polled := m.latest, m.polled
		m.mu.Unlock()
		polledYet := !s.Start.IsZero()
		if polledYet && !s.Start.Before(since) && cond(s) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-polled:
		}
	}
}

// fetchStatus reads one instance's GET /status.
func fetchStatus(ctx context.Context, c *http.Client, addr string) (status, error) {
	var st status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return st, fmt.Errorf("GET /status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("GET /status: %w", err)
	}
	if st.Identity == "" {
		return st, errors.New("GET /status: no identity")
	}
	return st, nil
}

// otherLeader returns an instance other than old that claims leadership.
func otherLeader(s snapshot, old string) (view, bool) {
	for _, l := range s.leaders() {
		if l.ID != old {
			return l, true
		}
	}
	return view{}, false
}
