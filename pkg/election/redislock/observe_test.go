package redislock

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// observer runs Observe in the background and records what it reports.
type observer struct {
	mu     sync.Mutex
	seen   []election.Leader
	done   chan error
	cancel context.CancelFunc
}

func observe(t *testing.T, b *Backend) *observer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	o := &observer{done: make(chan error, 1), cancel: cancel}
	go func() {
		o.done <- b.Observe(ctx, func(l election.Leader) {
			o.mu.Lock()
			o.seen = append(o.seen, l)
			o.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-o.done
	})
	return o
}

func (o *observer) reports() []election.Leader {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]election.Leader(nil), o.seen...)
}

// waitFor waits until the latest report is want, and returns how many
// reports there were then.
func (o *observer) waitFor(t *testing.T, want election.Leader) int {
	t.Helper()
	n := 0
	eventually(t, 10*time.Second, "observer to report "+want.ID, func() bool {
		r := o.reports()
		n = len(r)
		return n > 0 && r[n-1] == want
	})
	return n
}

func TestObserve(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 5 * time.Second
	watcher := newBackend(t, []*redistest.Server{srv}, "watcher", ttl, nil)
	o := observe(t, watcher)
	o.waitFor(t, election.Leader{}) // no leader at start

	b := newBackend(t, []*redistest.Server{srv}, "pod-a", ttl, nil)
	c := candidate(t, b)
	term := campaign(t, c, 10*time.Second)
	start := time.Now()
	o.waitFor(t, election.Leader{ID: "pod-a", Token: term.Token})
	// Announced by pub/sub, not found by the (1s) poll.
	if d := time.Since(start); d > watcher.poll*3/4 {
		t.Errorf("new leader seen after %s, want well under the %s poll", d, watcher.poll)
	}

	for range 3 {
		if _, err := c.Renew(t.Context()); err != nil {
			t.Fatalf("Renew: %v", err)
		}
	}
	if err := c.Resign(t.Context()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	n := o.waitFor(t, election.Leader{})
	if n != 3 {
		t.Errorf("reports = %+v, want exactly: none, pod-a, none (renewals are not changes)", o.reports())
	}

	// Redis restarting (empty) ends Observe with an error if a read fell
	// into the outage, or else is seen as the lock being gone.
	c2 := candidate(t, b)
	term2 := campaign(t, c2, 10*time.Second)
	o.waitFor(t, election.Leader{ID: "pod-a", Token: term2.Token})
	srv.Restart()
	eventually(t, 10*time.Second, "the observer to see the empty server or fail", func() bool {
		select {
		case err := <-o.done:
			o.done <- err // for the cleanup
			if err == nil {
				t.Fatal("Observe returned nil")
			}
			return true
		default:
		}
		r := o.reports()
		return r[len(r)-1] == election.Leader{}
	})
}

func TestObserveSeesExpiry(t *testing.T) {
	srv := redistest.Start(t)
	// A long poll: only the expiry time read from Redis can explain a
	// prompt report.
	watcher := newBackend(t, []*redistest.Server{srv}, "watcher", 20*time.Second, nil)
	o := observe(t, watcher)
	o.waitFor(t, election.Leader{})

	holder := newBackend(t, []*redistest.Server{srv}, "pod-a", 300*time.Millisecond, nil)
	term := campaign(t, candidate(t, holder), 10*time.Second)
	o.waitFor(t, election.Leader{ID: "pod-a", Token: term.Token})
	o.waitFor(t, election.Leader{}) // never renewed: expires
	if d := time.Since(term.Validity.Sent); d > watcher.poll*3/4 {
		t.Errorf("expiry seen %s after the acquire, want near the 300ms TTL", d)
	}
}

func TestObserveRedlock(t *testing.T) {
	servers := redistest.StartN(t, 3)
	watcher := newBackend(t, servers, "watcher", 5*time.Second, nil)
	o := observe(t, watcher)
	o.waitFor(t, election.Leader{})
	b := newBackend(t, servers, "pod-a", 5*time.Second, nil)
	c := candidate(t, b)
	term := campaign(t, c, 10*time.Second)
	o.waitFor(t, election.Leader{ID: "pod-a", Token: term.Token})

	// One node down: the majority still names the leader.
	servers[0].Stop()
	if _, err := c.Renew(t.Context()); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	servers[0].Restart()
	// A copy on one node only is no leader.
	if err := c.Resign(t.Context()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	foreign, _ := newValue("minority", "")
	if err := newClient(t, servers[1].Addr()).Set(t.Context(), "leader-elector:test", foreign, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	o.waitFor(t, election.Leader{})
	leader, _, err := watcher.read(t.Context())
	if err != nil || leader != (election.Leader{}) {
		t.Fatalf("read with a copy on one of three nodes = %+v, %v; want no leader", leader, err)
	}
}
