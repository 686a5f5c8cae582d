package redislock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/redistest"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// The operations of issue #16 on Redis: planned switchover (Handoff), a
// crashed process's candidacy released by its restarted process
// (Reclaimer), and generations. Before they existed the backend implemented
// none of these interfaces, so these tests did not compile, and the
// conformance suite's Switchover subtest took its "unsupported" branch.

var (
	_ election.Handoff     = (*Backend)(nil)
	_ election.Reclaimer   = (*Backend)(nil)
	_ election.Generations = (*Backend)(nil)
)

// onLayouts runs fn on one master and on Redlock over three.
func onLayouts(t *testing.T, fn func(t *testing.T, servers []*redistest.Server)) {
	for _, n := range []int{1, 3} {
		name := "single"
		if n > 1 {
			name = "redlock"
		}
		t.Run(name, func(t *testing.T) { fn(t, redistest.StartN(t, n)) })
	}
}

// lead makes a candidacy of b that leads.
func lead(t *testing.T, b *Backend) (election.Candidacy, election.Term) {
	t.Helper()
	c := candidate(t, b)
	return c, campaign(t, c, 10*time.Second)
}

// waitInLine waits until b's line lists a live candidate named id on a
// majority of the nodes.
func waitInLine(t *testing.T, b *Backend, id string) {
	t.Helper()
	eventually(t, 10*time.Second, id+" in line", func() bool {
		lines, err := b.readLine(t.Context())
		if err != nil {
			return false
		}
		for _, e := range merge(lines, "") {
			if e.identity == id && e.nodes >= b.quorum {
				return true
			}
		}
		return false
	})
}

// frozen keeps a candidate named id in line on the given nodes, as a
// process that registered and then stopped short of taking the lock would
// (refreshing every 50ms until the returned stop is called).
func frozen(t *testing.T, b *Backend, id string, nodes ...int) (member string, stop func()) {
	t.Helper()
	member, err := newMember()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	register := func() {
		for _, i := range nodes {
			err := b.scripts.acquire.Run(ctx, b.nodes[i], []string{b.keys.lock, b.keys.counter, b.keys.since,
				b.keys.line, b.keys.next}, "", b.ttl.Milliseconds(), 0, member, 0, id, "1").Err()
			if err != nil && ctx.Err() == nil {
				t.Errorf("register %s on node %d: %v", id, i, err)
			}
		}
	}
	register()
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				register()
			}
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return member, stop
}

// A switchover hands the lock to the chosen candidate and nobody else,
// with a greater token; a name not in line changes nothing.
func TestHandOverToTheChosenCandidate(t *testing.T) {
	onLayouts(t, func(t *testing.T, servers []*redistest.Server) {
		const ttl = 10 * time.Second
		lb := newBackend(t, servers, "leader", ttl, nil)
		lc, term := lead(t, lb)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		won := map[string]<-chan outcome{}
		for _, id := range []string{"w1", "w2", "chosen", "w3"} {
			b := newBackend(t, servers, id, ttl, nil)
			won[id] = campaignAsync(ctx, candidate(t, b))
			waitInLine(t, lb, id)
		}
		for _, to := range []string{"nobody", "leader"} {
			if err := lb.CheckSuccessor(ctx, lc, to); !errors.Is(err, election.ErrNotInLine) {
				t.Errorf("CheckSuccessor(%q) = %v, want ErrNotInLine", to, err)
			}
			if err := lb.HandOver(ctx, lc, to); !errors.Is(err, election.ErrNotInLine) {
				t.Errorf("HandOver(%q) = %v, want ErrNotInLine", to, err)
			}
		}
		if v, err := lc.Renew(ctx); err != nil || v.IsZero() {
			t.Fatalf("after refused handovers Renew = %v, %v; want the same term", v, err)
		}
		if err := lb.CheckSuccessor(ctx, lc, "chosen"); err != nil {
			t.Fatalf("CheckSuccessor(chosen): %v", err)
		}
		start := time.Now()
		if err := lb.HandOver(ctx, lc, "chosen"); err != nil {
			t.Fatalf("HandOver(chosen): %v", err)
		}
		select {
		case o := <-won["chosen"]:
			if o.err != nil {
				t.Fatalf("chosen's Campaign: %v", o.err)
			}
			t.Logf("the chosen successor won %v after HandOver began, token %d → %d", o.at.Sub(start), term.Token, o.term.Token)
			if o.term.Token <= term.Token {
				t.Errorf("successor's token %d, want more than %d", o.term.Token, term.Token)
			}
			if o.term.Kind != election.Handover {
				t.Errorf("successor's term kind %q, want %q", o.term.Kind, election.Handover)
			}
		case <-time.After(ttl / 2):
			t.Fatalf("the chosen successor did not win within %v", ttl/2)
		}
		for id, ch := range won {
			select {
			case o := <-ch:
				if id != "chosen" {
					t.Errorf("%s won too (%+v)", id, o)
				}
			default:
			}
		}
		if v, err := lc.Renew(ctx); err != nil || !v.IsZero() {
			t.Errorf("the old leader's Renew after the handover = %v, %v; want nothing held", v, err)
		}
		// Those ahead of the successor queued again behind it.
		lines, err := lb.readLine(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, e := range merge(lines, "") {
			// On Redlock the successor may have won before the handover
			// reached the last master, which then lists it for a TTL.
			if e.identity != "chosen" {
				order = append(order, e.identity)
			}
		}
		if got := strings.Join(order, ","); got != "w3,w1,w2" {
			t.Errorf("line after the handover %s, want w3,w1,w2 (w1 and w2 moved behind chosen)", got)
		}
	})
}

// A chosen successor that never takes the lock holds everybody else off
// for the reservation's TTL at most; then the lock is free again.
func TestHandOverReservationExpires(t *testing.T) {
	onLayouts(t, func(t *testing.T, servers []*redistest.Server) {
		const ttl = time.Second
		lb := newBackend(t, servers, "leader", ttl, nil)
		lc, term := lead(t, lb)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rctx, stopRenewing := context.WithCancel(ctx)
		waitRenewals := keepRenewing(t, rctx, lc, term, ttl)
		all := make([]int, len(servers))
		for i := range all {
			all[i] = i
		}
		_, stop := frozen(t, lb, "ghost", all...)
		w := newBackend(t, servers, "w", ttl, nil)
		won := campaignAsync(ctx, candidate(t, w))
		waitInLine(t, lb, "w")
		// The handover ends the term: renewals stop first (the engine's
		// step-down does the same).
		stopRenewing()
		waitRenewals()
		start := time.Now()
		if err := lb.HandOver(ctx, lc, "ghost"); err != nil {
			t.Fatalf("HandOver(ghost): %v", err)
		}
		stop() // the ghost never comes
		select {
		case o := <-won:
			if o.err != nil {
				t.Fatalf("w's Campaign: %v", o.err)
			}
			after := o.at.Sub(start)
			t.Logf("w won %v after the handover to a successor that never came (reservation %v)", after, ttl)
			if after < ttl/2 {
				t.Errorf("w won %v after a handover to another candidate, inside the reservation (%v)", after, ttl)
			}
		case <-time.After(ttl + 10*time.Second):
			t.Fatal("w never won after the reservation expired")
		}
	})
}

// On Redlock the successor must be in line on a majority of the masters;
// otherwise nothing changes.
func TestRedlockHandOverNeedsAMajority(t *testing.T) {
	servers := redistest.StartN(t, 3)
	lb := newBackend(t, servers, "leader", 10*time.Second, nil)
	lc, _ := lead(t, lb)
	frozen(t, lb, "minority", 0)
	err := lb.HandOver(t.Context(), lc, "minority")
	if !errors.Is(err, election.ErrNotInLine) || !strings.Contains(err.Error(), "1 of 3") {
		t.Fatalf("HandOver to a candidate in line on 1 of 3 masters = %v, want ErrNotInLine saying so", err)
	}
	if v, err := lc.Renew(t.Context()); err != nil || v.IsZero() {
		t.Fatalf("Renew after the refused handover = %v, %v; want the same term", v, err)
	}
	// In line on two of three: handed over.
	frozen(t, lb, "majority", 1, 2)
	if err := lb.HandOver(t.Context(), lc, "majority"); err != nil {
		t.Fatalf("HandOver to a candidate in line on 2 of 3 masters: %v", err)
	}
	for i, s := range servers {
		if n, err := newClient(t, s.Addr()).Exists(t.Context(), lb.keys.lock).Result(); err != nil || n != 0 {
			t.Errorf("node %d still holds the old leader's lock (%d, %v)", i, n, err)
		}
	}
}

// A process that crashed while leading left its lock behind; its restarted
// process releases it from the recorded handle, and the waiting candidate
// wins at once instead of after the TTL. Nobody else's reclaim touches it:
// not another identity's, and not a live twin's with the same identity.
func TestReclaimReleasesTheCrashedLeadersLock(t *testing.T) {
	onLayouts(t, func(t *testing.T, servers []*redistest.Server) {
		const long = time.Minute // far longer than the test may wait
		crashed := newBackend(t, servers, "a", long, nil)
		cand, term := lead(t, crashed)
		handle := crashed.Handle(cand)
		if !validMember(handle) {
			t.Fatalf("Handle = %q, want a candidacy's name", handle)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		waiter := newBackend(t, servers, "b", long, nil)
		won := campaignAsync(ctx, candidate(t, waiter))
		waitInLine(t, crashed, "b")

		if err := newBackend(t, servers, "x", long, nil).Reclaim(ctx, handle); err == nil {
			t.Fatal("Reclaim by another identity succeeded; want a refusal")
		}
		// A twin started with the same identity, waiting in line, reclaims
		// its own candidacy and a stranger's handle: a's lock stays.
		twin := newBackend(t, servers, "a", long, nil)
		tc := candidate(t, twin)
		tctx, tcancel := context.WithCancel(ctx)
		twinWon := campaignAsync(tctx, tc)
		eventually(t, 10*time.Second, "the twin in line", func() bool {
			lines, err := twin.readLine(ctx)
			return err == nil && len(merge(lines, "")) == 2
		})
		for _, h := range []string{twin.Handle(tc), strings.Repeat("0", 32)} {
			if err := twin.Reclaim(ctx, h); err != nil {
				t.Fatalf("the twin's Reclaim(%s): %v", h, err)
			}
		}
		if v, err := cand.Renew(ctx); err != nil || v.IsZero() {
			t.Fatalf("a's Renew after the twin's reclaims = %v, %v; the twin took a's lock", v, err)
		}
		tcancel()
		if o := <-twinWon; o.err == nil {
			t.Fatal("the twin won while a held the lock")
		}
		select {
		case o := <-won:
			t.Fatalf("b won (%+v) while a's lock should still stand", o)
		default:
		}

		start := time.Now()
		restarted := newBackend(t, servers, "a", long, nil)
		if err := restarted.Reclaim(ctx, handle); err != nil {
			t.Fatalf("Reclaim: %v", err)
		}
		select {
		case o := <-won:
			if o.err != nil {
				t.Fatalf("b's Campaign: %v", o.err)
			}
			t.Logf("b won %v after the restarted a reclaimed (TTL %v)", o.at.Sub(start), long)
			if o.term.Token <= term.Token {
				t.Errorf("b's token %d, want more than a's %d", o.term.Token, term.Token)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("b did not win within 10s of the reclaim (TTL %v)", long)
		}
		// Reclaiming again (nothing left) is not an error.
		if err := restarted.Reclaim(ctx, handle); err != nil {
			t.Errorf("second Reclaim: %v", err)
		}
	})
}

// Reclaim refuses a malformed handle, and deletes nothing when what the
// handle names belongs to another identity.
func TestReclaimRefusesAnotherIdentitysCandidacy(t *testing.T) {
	servers := redistest.StartN(t, 1)
	b := newBackend(t, servers, "a", time.Minute, nil)
	admin := newClient(t, servers[0].Addr())
	for _, h := range []string{"", "not-hex", strings.Repeat("A", 32), "123"} {
		if err := b.Reclaim(t.Context(), h); err == nil {
			t.Errorf("Reclaim(%q) succeeded; want a malformed-handle error", h)
		}
	}
	handle := strings.Repeat("ab", 16)
	value := fmt.Sprintf(`{"id":"other","cand":%q,"nonce":"n"}`, handle)
	if err := admin.Set(t.Context(), b.keys.lock, value, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Reclaim(t.Context(), handle); err == nil || !strings.Contains(err.Error(), "other") {
		t.Fatalf("Reclaim of a lock holding identity other = %v, want a refusal naming it", err)
	}
	if v, _ := admin.Get(t.Context(), b.keys.lock).Result(); v != value {
		t.Fatalf("lock after the refused reclaim = %q, want it untouched", v)
	}
	if err := admin.Del(t.Context(), b.keys.lock).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.HSet(t.Context(), b.keys.line, handle, "1 99999999999999 0 other").Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Reclaim(t.Context(), handle); err == nil || !strings.Contains(err.Error(), "other") {
		t.Fatalf("Reclaim of a line entry of identity other = %v, want a refusal naming it", err)
	}
	if n, _ := admin.HExists(t.Context(), b.keys.line, handle).Result(); !n {
		t.Fatal("the other identity's line entry is gone")
	}
}

// generation runs WaitNewer for c with gen; queued is closed once c is in
// line, and the result arrives on done.
func generation(ctx context.Context, b *Backend, c election.Candidacy, gen int64) (queued <-chan struct{}, done <-chan error) {
	q, d := make(chan struct{}), make(chan error, 1)
	go func() { d <- b.WaitNewer(ctx, c, gen, func() { close(q) }) }()
	return q, d
}

// With generations, once a newer candidate waits, an older waiting one
// learns of it (WaitNewer returns) and never takes the lock before it; the
// leader names the newer one as its successor.
func TestGenerationsNewerCandidateGoesFirst(t *testing.T) {
	onLayouts(t, func(t *testing.T, servers []*redistest.Server) {
		const ttl = 10 * time.Second
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		lb := newBackend(t, servers, "old-0", ttl, nil)
		lc, term := lead(t, lb)
		lq, _ := generation(ctx, lb, lc, 1)
		<-lq // a leader is "queued" at once: it needs no place in line

		ob := newBackend(t, servers, "old-1", ttl, nil)
		oc := candidate(t, ob)
		oq, onewer := generation(ctx, ob, oc, 1)
		owon := campaignAsync(ctx, oc)
		<-oq
		if id, err := lb.NewerSuccessor(ctx, lc, 1); err != nil || id != "" {
			t.Fatalf("NewerSuccessor with only old candidates = %q, %v; want none", id, err)
		}

		nb := newBackend(t, servers, "new-0", ttl, nil)
		nc := candidate(t, nb)
		nq, nnewer := generation(ctx, nb, nc, 2)
		nwon := campaignAsync(ctx, nc)
		<-nq
		select {
		case err := <-onewer:
			if err != nil {
				t.Fatalf("old-1's WaitNewer: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("old-1's WaitNewer did not see the newer candidate behind it")
		}
		if id, err := lb.NewerSuccessor(ctx, lc, 1); err != nil || id != "new-0" {
			t.Fatalf("NewerSuccessor = %q, %v; want new-0", id, err)
		}
		if id, err := lb.NewerSuccessor(ctx, lc, 2); err != nil || id != "" {
			t.Fatalf("NewerSuccessor above generation 2 = %q, %v; want none", id, err)
		}
		// A plain resignation (no handover): only the newer one may win.
		if err := lc.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case o := <-nwon:
			if o.err != nil {
				t.Fatalf("new-0's Campaign: %v", o.err)
			}
			if o.term.Token <= term.Token {
				t.Errorf("new-0's token %d, want more than %d", o.term.Token, term.Token)
			}
		case o := <-owon:
			t.Fatalf("old-1 won (%+v) while a newer candidate waited", o)
		case <-time.After(ttl / 2):
			t.Fatal("nobody won after the resignation")
		}
		select {
		case o := <-owon:
			t.Fatalf("old-1 won too (%+v)", o)
		case err := <-nnewer:
			t.Fatalf("new-0's WaitNewer returned %v with nothing newer", err)
		default:
		}
	})
}

// A newer candidate that crashed while waiting holds older ones back only
// until its restarted process reclaims its place (or its entry expires).
func TestGenerationsCrashedNewerCandidateReclaimed(t *testing.T) {
	servers := redistest.StartN(t, 1)
	const long = time.Minute
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	nb := newBackend(t, servers, "new-0", long, nil)
	nc := candidate(t, nb)
	nctx, ncancel := context.WithCancel(ctx)
	nq, _ := generation(nctx, nb, nc, 2)
	<-nq
	ncancel() // crashed: it never resigns

	ob := newBackend(t, servers, "old-0", long, nil)
	oc := candidate(t, ob)
	oq, _ := generation(ctx, ob, oc, 1)
	owon := campaignAsync(ctx, oc)
	<-oq
	// old-0 is refused the free lock: a newer candidate is in line.
	eventually(t, 10*time.Second, "old-0 to have tried", func() bool {
		lines, err := ob.readLine(ctx)
		return err == nil && len(merge(lines, "")) == 2
	})
	select {
	case o := <-owon:
		t.Fatalf("old-0 won (%+v) while a newer candidate was in line", o)
	case <-time.After(200 * time.Millisecond): // several attempts (poll 1s, but the first is at once)
	}
	start := time.Now()
	if err := newBackend(t, servers, "new-0", long, nil).Reclaim(ctx, nb.Handle(nc)); err != nil {
		t.Fatalf("Reclaim: %v", err)
	}
	select {
	case o := <-owon:
		if o.err != nil {
			t.Fatalf("old-0's Campaign: %v", o.err)
		}
		t.Logf("old-0 won %v after the crashed newer candidate was reclaimed", o.at.Sub(start))
	case <-time.After(10 * time.Second):
		t.Fatal("old-0 did not win after the reclaim")
	}
}

// A switchover's reservation outlives a round of the successor that gets
// the node but not a majority (the round gives the node back): only the
// successor's commit consumes it. (When the grant consumed it, a rival
// took the nodes the successor gave back, and won, in the Redlock
// end-to-end switchover.)
func TestReservationSurvivesAPartialRound(t *testing.T) {
	servers := redistest.StartN(t, 1)
	b := newBackend(t, servers, "s", time.Minute, nil)
	admin := newClient(t, servers[0].Addr())
	ctx := t.Context()
	succ, rival := strings.Repeat("1", 32), strings.Repeat("2", 32)
	if err := admin.Set(ctx, b.keys.next, "id-1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	acquire := func(member, value string) []any {
		t.Helper()
		r, err := b.scripts.acquire.Run(ctx, b.nodes[0], []string{b.keys.lock, b.keys.counter, b.keys.since,
			b.keys.line, b.keys.next}, value, 60000, 0, member, 0, "id-"+member[:1], "0").Slice()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := acquire(rival, "rival-value"); r[0] != int64(0) || r[3] != int64(whyReserved) {
		t.Fatalf("rival's acquire on a reserved node = %v, want refused as reserved", r)
	}
	if r := acquire(succ, "succ-value"); r[0] != int64(1) {
		t.Fatalf("successor's acquire = %v, want granted", r)
	}
	// The round failed elsewhere: it gives the node back.
	if _, err := b.release(ctx, "succ-value", false, ""); err != nil {
		t.Fatal(err)
	}
	if r := acquire(rival, "rival-value"); r[0] != int64(0) || r[3] != int64(whyReserved) {
		t.Fatalf("rival's acquire after the successor's partial round = %v, want still refused as reserved", r)
	}
	// The next round wins: its commit consumes the reservation.
	if r := acquire(succ, "succ-value-2"); r[0] != int64(1) {
		t.Fatalf("successor's second acquire = %v, want granted", r)
	}
	if _, err := b.scripts.raise.Run(ctx, b.nodes[0], []string{b.keys.counter, b.keys.events, b.keys.next, b.keys.line}, 5, succ, "id-1").Result(); err != nil {
		t.Fatal(err)
	}
	if n, _ := admin.Exists(ctx, b.keys.next).Result(); n != 0 {
		t.Fatal("the reservation outlived the successor's commit")
	}
}

// The reservation is for the chosen name, not one candidacy: a successor
// whose candidacy failed and started again (here: it registered, then
// vanished, and a fresh candidacy of the same identity comes) still gets
// the lock, and a rival waiting meanwhile does not.
func TestHandOverReservationIsTheIdentitys(t *testing.T) {
	onLayouts(t, func(t *testing.T, servers []*redistest.Server) {
		const ttl = 10 * time.Second
		lb := newBackend(t, servers, "leader", ttl, nil)
		lc, term := lead(t, lb)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		all := make([]int, len(servers))
		for i := range all {
			all[i] = i
		}
		_, stop := frozen(t, lb, "s", all...)
		rival := campaignAsync(ctx, candidate(t, newBackend(t, servers, "rival", ttl, nil)))
		waitInLine(t, lb, "rival")
		if err := lb.HandOver(ctx, lc, "s"); err != nil {
			t.Fatalf("HandOver(s): %v", err)
		}
		stop() // s's candidacy is gone; s campaigns again with a new one
		again := campaignAsync(ctx, candidate(t, newBackend(t, servers, "s", ttl, nil)))
		select {
		case o := <-again:
			if o.err != nil {
				t.Fatalf("s's new Campaign: %v", o.err)
			}
			if o.term.Token <= term.Token {
				t.Errorf("s's token %d, want more than %d", o.term.Token, term.Token)
			}
		case o := <-rival:
			t.Fatalf("the rival won (%+v) during a switchover to s", o)
		case <-time.After(ttl / 2):
			t.Fatal("s's new candidacy did not win within half the reservation")
		}
		select {
		case o := <-rival:
			t.Fatalf("the rival won too (%+v)", o)
		default:
		}
	})
}
