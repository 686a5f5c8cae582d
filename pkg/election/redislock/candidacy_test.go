package redislock

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestCampaignReportsValidity(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 5 * time.Second
	b := newBackend(t, []*redistest.Server{srv}, "a", ttl, nil)
	c := candidate(t, b)

	before := time.Now()
	term := campaign(t, c, 10*time.Second)
	if term.Token != 1 {
		t.Errorf("first token = %d, want 1", term.Token)
	}
	wantTTL := ttl - ttl/100 - 2*time.Millisecond
	if term.Validity.TTL != wantTTL {
		t.Errorf("validity TTL = %s, want %s (TTL minus Redlock drift)", term.Validity.TTL, wantTTL)
	}
	if term.Validity.Sent.Before(before) || term.Validity.Sent.After(time.Now()) {
		t.Errorf("validity sent %v is not during Campaign", term.Validity.Sent)
	}

	before = time.Now()
	v, err := c.Renew(t.Context())
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if v.TTL != wantTTL || v.Sent.Before(before) {
		t.Errorf("renew validity = %+v, want TTL %s sent after %v", v, wantTTL, before)
	}
	pttl := newClient(t, srv.Addr()).PTTL(t.Context(), "leader-elector:test").Val()
	if pttl <= ttl-time.Second || pttl > ttl {
		t.Errorf("lock PTTL after renew = %s, want about %s", pttl, ttl)
	}

	if err := c.Resign(t.Context()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	v, err = c.Renew(t.Context())
	if err != nil || !v.IsZero() {
		t.Errorf("Renew after Resign = %+v, %v; want zero validity and nil", v, err)
	}
	if _, err := c.Campaign(t.Context()); !errors.Is(err, election.ErrLost) {
		t.Errorf("Campaign after Resign = %v, want ErrLost", err)
	}
}

func TestRenewWhenNotLeading(t *testing.T) {
	b := newBackend(t, redistest.StartN(t, 1), "a", 5*time.Second, nil)
	c := candidate(t, b)
	v, err := c.Renew(t.Context())
	if err != nil || !v.IsZero() {
		t.Fatalf("Renew before Campaign = %+v, %v; want zero validity and nil", v, err)
	}
	if err := c.Resign(t.Context()); err != nil {
		t.Fatalf("Resign before Campaign: %v", err)
	}
}

func TestRenewAfterKeyDeletedIsLost(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, []*redistest.Server{srv}, "a", 5*time.Second, nil)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)

	if err := newClient(t, srv.Addr()).Del(t.Context(), "leader-elector:test").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Renew(t.Context())
	if !errors.Is(err, election.ErrLost) {
		t.Fatalf("Renew after the key was deleted = %v, want ErrLost", err)
	}
	// The candidacy is over: nothing left to renew.
	if v, err := c.Renew(t.Context()); err != nil || !v.IsZero() {
		t.Fatalf("second Renew = %+v, %v; want zero validity and nil", v, err)
	}
}

func TestRenewAfterForeignTakeoverIsLost(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, []*redistest.Server{srv}, "a", 5*time.Second, nil)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)
	foreign, _ := newValue("intruder", "")
	if err := newClient(t, srv.Addr()).Set(t.Context(), "leader-elector:test", foreign, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Renew(t.Context()); !errors.Is(err, election.ErrLost) {
		t.Fatalf("Renew after another value took the key = %v, want ErrLost", err)
	}
	// Losing must not delete somebody else's lock.
	if v := newClient(t, srv.Addr()).Get(t.Context(), "leader-elector:test").Val(); v != foreign {
		t.Fatalf("lock value = %q, want the intruder's", v)
	}
}

func TestRenewUnreachableIsTransient(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, []*redistest.Server{srv}, "a", 5*time.Second, nil)
	c := candidate(t, b)
	campaign(t, c, 10*time.Second)
	srv.Stop()
	_, err := c.Renew(t.Context())
	if err == nil || errors.Is(err, election.ErrLost) {
		t.Fatalf("Renew with Redis down = %v, want a transient error", err)
	}
}

// TestOnlyOneWinsAndHandover: a second candidate waits while the first
// leads, and takes over within milliseconds of a Resign, through the
// release message.
func TestOnlyOneWinsAndHandover(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 5 * time.Second
	b1 := newBackend(t, []*redistest.Server{srv}, "a", ttl, nil)
	b2 := newBackend(t, []*redistest.Server{srv}, "b", ttl, nil)
	c1, c2 := candidate(t, b1), candidate(t, b2)
	first := campaign(t, c1, 10*time.Second)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	second := campaignAsync(ctx, c2)
	admin := newClient(t, srv.Addr())
	eventually(t, 10*time.Second, "the waiter to subscribe", func() bool {
		return subscribers(t, admin, "leader-elector:test:events") >= 1
	})
	// Several renewals while the second candidate waits: it must not win.
	for range 3 {
		if _, err := c1.Renew(t.Context()); err != nil {
			t.Fatalf("Renew: %v", err)
		}
	}
	select {
	case o := <-second:
		t.Fatalf("second candidate won while the first led: %+v", o)
	default:
	}

	resigned := time.Now()
	if err := c1.Resign(t.Context()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	o := <-second
	if o.err != nil {
		t.Fatalf("second Campaign: %v", o.err)
	}
	// The poll interval is 1s here; winning well before it proves the
	// release message did the work. The bound is generous for slow CI.
	d := o.at.Sub(resigned)
	if d > b2.poll*3/4 {
		t.Errorf("handover took %s, want well under the %s poll interval", d, b2.poll)
	}
	t.Logf("handover took %s", d)
	if first.Vacant != (time.Time{}) || first.Kind != "" {
		t.Errorf("first term Vacant = %v, Kind %q, want zero: it won without waiting", first.Vacant, first.Kind)
	}
	if o.term.Kind != election.Handover {
		t.Errorf("second term Kind = %q after a resign, want %q", o.term.Kind, election.Handover)
	}
	if o.term.Vacant.Before(resigned) || o.term.Vacant.After(o.at) {
		t.Errorf("second term Vacant = %v, want between the resign (%v) and the win (%v)",
			o.term.Vacant, resigned, o.at)
	}
	if o.term.Token <= first.Token {
		t.Errorf("second token %d is not above first %d", o.term.Token, first.Token)
	}
	if _, err := c1.Renew(t.Context()); err != nil {
		t.Errorf("Renew of the resigned candidacy = %v, want nil", err)
	}
}

// TestWaiterWinsWithoutMessages: when the release message is lost, or the
// holder just stops (its lock expires, which publishes nothing), the waiter
// still takes over through its poll.
func TestWaiterWinsWithoutMessages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		resign bool // resign (message lost) rather than let the lock expire
		within time.Duration
	}{
		{name: "release message lost", ttl: 5 * time.Second, resign: true, within: 4 * time.Second},
		{name: "holder stops renewing", ttl: time.Second, within: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			var calls1, calls2 atomic.Int64
			b1 := newBackend(t, []*redistest.Server{srv}, "a", tc.ttl, func(c Client) Client { return lossyClient{c, &calls1} })
			b2 := newBackend(t, []*redistest.Server{srv}, "b", tc.ttl, func(c Client) Client { return lossyClient{c, &calls2} })
			c1, c2 := candidate(t, b1), candidate(t, b2)
			first := campaign(t, c1, 10*time.Second)

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			second := campaignAsync(ctx, c2)
			// Once its first attempt was refused, only the poll can wake it.
			// (Counting answered calls instead raced: the candidacy's
			// registration in the line is a script call too, and the lock
			// was free again before the first attempt; CI, 2026-12-07.)
			eventually(t, 10*time.Second, "the waiter's first refused attempt", func() bool { return calls2.Load() >= 1 })
			start := time.Now()
			if tc.resign {
				if err := c1.Resign(t.Context()); err != nil {
					t.Fatalf("Resign: %v", err)
				}
			}
			var o outcome
			select {
			case o = <-second:
			case <-time.After(tc.within):
				t.Fatalf("waiter did not win within %s", tc.within)
			}
			if o.err != nil {
				t.Fatalf("second Campaign: %v", o.err)
			}
			// Without the release message a resignation looks like an expiry.
			if o.term.Kind != election.Failover {
				t.Errorf("Kind = %q after the holder went silently, want %q", o.term.Kind, election.Failover)
			}
			if !tc.resign && o.at.Sub(first.Validity.Sent) < first.Validity.TTL {
				t.Errorf("waiter won %s after the holder's acquire, before its lock could expire (%s)",
					o.at.Sub(first.Validity.Sent), first.Validity.TTL)
			}
			if o.term.Token <= first.Token {
				t.Errorf("second token %d is not above first %d", o.term.Token, first.Token)
			}
			if calls2.Load() < 1 {
				t.Errorf("waiter won without a refused attempt first")
			}
			t.Logf("waiter won %s after the holder stopped", o.at.Sub(start))
		})
	}
}

func TestTokensIncrease(t *testing.T) {
	srv := redistest.Start(t)
	backends := []*Backend{
		newBackend(t, []*redistest.Server{srv}, "a", 5*time.Second, nil),
		newBackend(t, []*redistest.Server{srv}, "b", 5*time.Second, nil),
	}
	var last int64
	for i := range 6 {
		c := candidate(t, backends[i%2])
		term := campaign(t, c, 10*time.Second)
		if term.Token <= last {
			t.Fatalf("term %d token %d is not above %d", i, term.Token, last)
		}
		last = term.Token
		if err := c.Resign(t.Context()); err != nil {
			t.Fatalf("Resign: %v", err)
		}
	}
}

// TestUnreachableIsAnError: the backend does not retry. With Redis down a
// new candidacy fails at once, naming the node and the cause, and a pending
// Campaign returns an error at its next attempt; once Redis is back, a
// fresh candidacy wins.
func TestUnreachableIsAnError(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, []*redistest.Server{srv}, "a", time.Second, nil)
	b2 := newBackend(t, []*redistest.Server{srv}, "b", time.Second, nil)
	campaign(t, candidate(t, b), 10*time.Second)
	res := campaignAsync(t.Context(), candidate(t, b2))
	srv.Stop()
	select {
	case o := <-res:
		if o.err == nil || errors.Is(o.err, election.ErrLost) || !strings.Contains(o.err.Error(), srv.Addr()) {
			t.Fatalf("pending Campaign with Redis down = %+v, want a transient error naming %s", o, srv.Addr())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a pending Campaign kept waiting while Redis was down")
	}
	_, _, err := b.Candidate(t.Context())
	if err == nil || !strings.Contains(err.Error(), srv.Addr()) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Candidate with Redis down = %v, want an error naming %s and the refused connection", err, srv.Addr())
	}
	srv.Restart()
	skipWarmUp(t, []*redistest.Server{srv})
	campaign(t, candidate(t, b), 10*time.Second)
}

func TestCampaignStopsOnCancel(t *testing.T) {
	srv := redistest.Start(t)
	b1 := newBackend(t, []*redistest.Server{srv}, "a", 5*time.Second, nil)
	b2 := newBackend(t, []*redistest.Server{srv}, "b", 5*time.Second, nil)
	campaign(t, candidate(t, b1), 10*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := candidate(t, b2).Campaign(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign against a held lock = %v, want DeadlineExceeded", err)
	}
}
