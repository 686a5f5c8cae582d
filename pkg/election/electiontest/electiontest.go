// Package electiontest is the conformance suite every election backend
// passes: its tests call Run with a Harness that builds the backend against
// real servers, and the suite runs engines on it and checks the behaviour
// the engine and its users rely on.
//
// What it checks, each as a subtest of Run:
//
//   - OneLeader: among three candidates exactly one leads; every follower
//     is ready and names the same leader and fencing token.
//   - Handover: a resigning leader is replaced well under one TTL, and
//     fencing tokens strictly increase from term to term.
//   - Failover: a leader cut off from the backend (it can no longer renew
//     or release) steps down at its own deadline, and another candidate
//     leads within TTL plus slack.
//   - Vanished: a candidacy whose key or lock was deleted behind its back
//     while it waited never leads on it: Campaign returns election.ErrLost,
//     or the win is real (Renew succeeds and observers name it).
//   - Outage: with the backend unreachable for three TTLs every instance
//     reads not ready and names no leader, and the leader steps down at its
//     deadline; when the backend is back, one leader again.
//   - Resign: Resign as a follower is election.ErrNotLeader at once; as a
//     leader it returns not leading, a peer takes over, and the resigned
//     candidate does not lead again during its hold-off.
//   - Shutdown: a leader whose engine stops releases at once, so a peer
//     leads well under one TTL.
//   - Switchover: for a backend that implements election.Handoff,
//     Engine.HandOver to a chosen follower makes that follower, and no other
//     candidate, the next leader, well under one TTL, with a greater token;
//     a name not in line is election.ErrNotInLine and the leader leads on
//     without a step-down. For any other backend, HandOver is
//     election.ErrHandoffUnsupported and Status.Switchover is false.
//   - DuplicateIdentity: two instances started with the same identity: one
//     leads, the other names no leader and reports the duplicate.
//
// It uses real time (the behaviours involve real servers' clocks and
// expiry); the engine's own time-driven logic is tested on fake time in
// package election.
package electiontest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Harness is what the suite needs from one backend under test.
type Harness struct {
	// New returns a backend for p on the servers under test. Each call is a
	// separate client, as separate sidecars would have. The suite closes it.
	New func(t *testing.T, p election.Params) election.Backend
	// TTL is the lease or lock TTL the suite runs with; the backend's
	// minimum keeps the suite fast.
	TTL time.Duration
	// Outage makes the servers unreachable for every backend New returned
	// (for example: reset every connection through a proxy and refuse new
	// ones), and returns the function that ends the outage.
	Outage func(t *testing.T) (restore func())
	// Delete removes, behind the backend's back, whatever the backend
	// stores for the candidate p (its key, its lock), as an operator or a
	// bug elsewhere might.
	Delete func(t *testing.T, p election.Params)
}

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Outage == nil || h.Delete == nil || h.TTL <= 0 {
		t.Fatal("electiontest: Harness needs New, TTL, Outage and Delete")
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"OneLeader", testOneLeader},
		{"Handover", testHandover},
		{"Failover", testFailover},
		{"Vanished", testVanished},
		{"Outage", testOutage},
		{"Resign", testResign},
		{"Shutdown", testShutdown},
		{"Switchover", testSwitchover},
		{"DuplicateIdentity", testDuplicateIdentity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			tc.fn(t, &suite{h: h, election: electionName(t)})
			t.Logf("%s took %v", tc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// suite is one subtest's state: its own election on the shared servers.
type suite struct {
	h        Harness
	election string
}

// node is one candidate: an engine on its own backend, which the test can
// cut off from the servers.
type node struct {
	id      string
	engine  *election.Engine
	backend *cutoff
	stop    func() // stops the engine (a graceful shutdown) and waits
}

func (s *suite) params(id string) election.Params {
	return election.Params{Election: s.election, Identity: id, TTL: s.h.TTL}
}

// start runs a candidate until the test ends (or stop is called).
func (s *suite) start(t *testing.T, id string, mod ...func(*election.Config)) *node {
	t.Helper()
	b := &cutoff{Backend: s.h.New(t, s.params(id)), cut: make(chan struct{})}
	t.Cleanup(func() { _ = b.Close() })
	var eb election.Backend = b
	if _, ok := b.Backend.(election.Handoff); ok {
		eb = &cutoffHandoff{b}
	}
	cfg := election.Config{
		Election: s.election, Identity: id, TTL: s.h.TTL, Backend: eb, Logger: logger(t, id),
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	e, err := election.New(cfg)
	if err != nil {
		t.Fatalf("election.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	}()
	var once sync.Once
	n := &node{id: id, engine: e, backend: b, stop: func() { once.Do(func() { cancel(); <-done }) }}
	t.Cleanup(n.stop)
	return n
}

func (s *suite) startN(t *testing.T, n int) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = s.start(t, fmt.Sprintf("c%d", i))
	}
	return nodes
}

// agreed waits until exactly one of nodes leads and every other one is
// ready and names it with its token, and returns the leader.
func agreed(t *testing.T, nodes []*node, timeout time.Duration) (*node, election.Status) {
	t.Helper()
	var (
		leader *node
		lst    election.Status
	)
	eventually(t, timeout, "one leader every candidate agrees on", func() bool {
		leader = nil
		var sts []election.Status
		for _, n := range nodes {
			st, _ := n.engine.Status()
			sts = append(sts, st)
			if st.IsLeader {
				if leader != nil {
					t.Fatalf("two leaders: %s and %s", leader.id, n.id)
				}
				leader, lst = n, st
			}
		}
		if leader == nil {
			return false
		}
		for _, st := range sts {
			if !st.Ready || st.Leader != leader.id || st.FencingToken != lst.FencingToken {
				return false
			}
		}
		return true
	})
	return leader, lst
}

// others returns nodes without n.
func others(nodes []*node, n *node) []*node {
	var out []*node
	for _, o := range nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

func testOneLeader(t *testing.T, s *suite) {
	nodes := s.startN(t, 3)
	leader, st := agreed(t, nodes, 10*s.h.TTL)
	if st.FencingToken <= 0 {
		t.Errorf("leader %s has fencing token %d, want a positive one", leader.id, st.FencingToken)
	}
	if st.State != election.StateLeading {
		t.Errorf("leader's state %v, want leading", st.State)
	}
	for _, n := range others(nodes, leader) {
		if st, _ := n.engine.Status(); st.State != election.StateFollowing {
			t.Errorf("%s's state %v, want following", n.id, st.State)
		}
	}
}

func testHandover(t *testing.T, s *suite) {
	nodes := s.startN(t, 3)
	leader, st := agreed(t, nodes, 10*s.h.TTL)
	last := st.FencingToken
	for round := range 3 {
		// A candidate that resigned earlier holds off for a TTL; wait
		// until every other candidate campaigns again, so the handover
		// measures the backend, not a hold-off.
		eventually(t, 10*s.h.TTL, "every other candidate to follow", func() bool {
			for _, n := range others(nodes, leader) {
				if st, _ := n.engine.Status(); st.State != election.StateFollowing {
					return false
				}
			}
			return true
		})
		resigned := time.Now()
		if err := leader.engine.Resign(t.Context()); err != nil {
			t.Fatalf("round %d: Resign: %v", round, err)
		}
		var next *node
		eventually(t, 10*s.h.TTL, "another candidate to lead", func() bool {
			for _, n := range others(nodes, leader) {
				if st, _ := n.engine.Status(); st.IsLeader {
					next = n
					return true
				}
			}
			return false
		})
		took := time.Since(resigned)
		t.Logf("round %d: handover %s → %s took %v", round, leader.id, next.id, took)
		if took > s.h.TTL/2 {
			t.Errorf("round %d: handover took %v, want well under the TTL %v", round, took, s.h.TTL)
		}
		leader, st = agreed(t, nodes, 10*s.h.TTL)
		if st.FencingToken <= last {
			t.Fatalf("round %d: token %d after %d: tokens must strictly increase", round, st.FencingToken, last)
		}
		last = st.FencingToken
	}
}

func testFailover(t *testing.T, s *suite) {
	nodes := s.startN(t, 3)
	leader, st := agreed(t, nodes, 10*s.h.TTL)
	cut := time.Now()
	leader.backend.cutOff()
	// The cut-off leader renewed at most once after cut (an acknowledged
	// request sent before it): it must stop claiming by cut + TTL.
	eventually(t, 10*s.h.TTL, "the cut-off leader to step down", func() bool {
		st, _ := leader.engine.Status()
		return !st.IsLeader
	})
	if d := time.Since(cut); d > s.h.TTL {
		t.Errorf("the cut-off leader stepped down %v after losing the backend, later than the TTL %v", d, s.h.TTL)
	}
	next, nst := agreed(t, others(nodes, leader), 10*s.h.TTL)
	took := time.Since(cut)
	t.Logf("failover %s → %s took %v (TTL %v)", leader.id, next.id, took, s.h.TTL)
	if slack := s.h.TTL + 2*time.Second; took > s.h.TTL+slack {
		t.Errorf("failover took %v, want at most TTL + %v", took, slack)
	}
	if nst.FencingToken <= st.FencingToken {
		t.Errorf("token %d after %d: tokens must strictly increase", nst.FencingToken, st.FencingToken)
	}
	if lst, _ := leader.engine.Status(); lst.IsLeader || lst.Ready {
		t.Errorf("the cut-off leader reads %+v, want not leading and not ready", lst)
	}
}

func testVanished(t *testing.T, s *suite) {
	holder := s.h.New(t, s.params("holder"))
	t.Cleanup(func() { _ = holder.Close() })
	waiter := s.h.New(t, s.params("waiter"))
	t.Cleanup(func() { _ = waiter.Close() })

	hc := candidacy(t, holder)
	keepRenewing(t, hc, s.h.TTL)
	ctx, cancel := context.WithTimeout(t.Context(), 10*s.h.TTL)
	defer cancel()
	if _, err := hc.Campaign(ctx); err != nil {
		t.Fatalf("holder's Campaign: %v", err)
	}
	wc := candidacy(t, waiter)
	keepRenewing(t, wc, s.h.TTL)
	type result struct {
		term election.Term
		err  error
	}
	res := make(chan result, 1)
	go func() {
		term, err := wc.Campaign(ctx)
		res <- result{term, err}
	}()
	// Let the waiter get in line, then take its place away and let the
	// holder go. (If the waiter were not in line yet, the assertions below
	// still hold; only what they exercise differs.)
	waitFor(t, s.h.TTL/2)
	s.h.Delete(t, s.params("waiter"))
	if err := hc.Resign(t.Context()); err != nil {
		t.Fatalf("holder's Resign: %v", err)
	}
	r := <-res
	switch {
	case errors.Is(r.err, election.ErrLost):
		t.Logf("the waiter's Campaign: %v", r.err)
	case r.err != nil:
		t.Fatalf("the waiter's Campaign = %v, want a term or election.ErrLost", r.err)
	default:
		// The backend held nothing for the waiter while it waited: its win
		// must be real.
		if _, err := wc.Renew(t.Context()); err != nil {
			t.Fatalf("the waiter won token %d but cannot renew: %v", r.term.Token, err)
		}
		want := election.Leader{ID: "waiter", Token: r.term.Token}
		if got := observeOnce(t, holder); got != want {
			t.Fatalf("the waiter won %+v but observers see %+v", want, got)
		}
	}
	_ = wc.Resign(t.Context())
}

func testOutage(t *testing.T, s *suite) {
	nodes := s.startN(t, 3)
	leader, st := agreed(t, nodes, 10*s.h.TTL)
	start := time.Now()
	restore := s.h.Outage(t)
	restored := false
	defer func() {
		if !restored {
			restore()
		}
	}()
	eventually(t, 3*s.h.TTL, "every instance to be not ready and name no leader", func() bool {
		for _, n := range nodes {
			if st, _ := n.engine.Status(); st.Ready || st.IsLeader || st.Leader != "" || st.FencingToken != 0 {
				return false
			}
		}
		return true
	})
	t.Logf("not ready, no leader named, %v into the outage", time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		if st, _ := n.engine.Status(); st.Problem == "" {
			t.Errorf("%s: no problem in status %+v", n.id, st)
		}
	}
	// It stays so for the rest of three TTLs.
	for time.Since(start) < 3*s.h.TTL {
		for _, n := range nodes {
			if st, _ := n.engine.Status(); st.Ready || st.IsLeader || st.Leader != "" {
				t.Fatalf("%s during the outage: %+v", n.id, st)
			}
		}
		waitFor(t, s.h.TTL/10)
	}
	_ = leader
	restore()
	restored = true
	_, nst := agreed(t, nodes, 20*s.h.TTL)
	if nst.FencingToken < st.FencingToken {
		t.Errorf("token %d after the outage is below %d before it", nst.FencingToken, st.FencingToken)
	}
	// A leader may win before its observer's next retry: its problem
	// clears a backoff step later.
	eventually(t, 10*s.h.TTL, "every problem to clear", func() bool {
		for _, n := range nodes {
			if st, _ := n.engine.Status(); st.Problem != "" {
				return false
			}
		}
		return true
	})
}

func testResign(t *testing.T, s *suite) {
	hold := func(c *election.Config) { c.ResignHoldoff = 2 * s.h.TTL }
	nodes := []*node{s.start(t, "c0", hold), s.start(t, "c1", hold)}
	leader, st := agreed(t, nodes, 10*s.h.TTL)
	follower := others(nodes, leader)[0]
	ctx, cancel := context.WithTimeout(t.Context(), s.h.TTL)
	defer cancel()
	if err := follower.engine.Resign(ctx); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Resign as a follower = %v, want election.ErrNotLeader", err)
	}
	if err := leader.engine.Resign(t.Context()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	resigned := time.Now()
	if st, _ := leader.engine.Status(); st.IsLeader || st.State != election.StateHoldingOff {
		t.Fatalf("after Resign returned: %+v, want not leading and holding off", st)
	}
	if err := leader.engine.Resign(ctx); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Resign while holding off = %v, want election.ErrNotLeader", err)
	}
	next, nst := agreed(t, nodes, 10*s.h.TTL)
	if next != follower || nst.FencingToken <= st.FencingToken {
		t.Fatalf("after the resign %s leads with token %d; want %s with a token above %d",
			next.id, nst.FencingToken, follower.id, st.FencingToken)
	}
	// The resigned candidate does not take leadership back during its
	// hold-off, even when the new leader resigns too.
	if err := next.engine.Resign(t.Context()); err != nil {
		t.Fatalf("second Resign: %v", err)
	}
	for time.Since(resigned) < 2*s.h.TTL-s.h.TTL/4 {
		if st, _ := leader.engine.Status(); st.IsLeader {
			t.Fatalf("%s leads again %v into its hold-off of %v", leader.id, time.Since(resigned), 2*s.h.TTL)
		}
		waitFor(t, s.h.TTL/10)
	}
	agreed(t, nodes, 10*s.h.TTL)
}

func testShutdown(t *testing.T, s *suite) {
	nodes := s.startN(t, 2)
	leader, _ := agreed(t, nodes, 10*s.h.TTL)
	stopped := time.Now()
	leader.stop()
	if st, _ := leader.engine.Status(); st.IsLeader || st.State != election.StateStopped {
		t.Fatalf("after shutdown: %+v, want not leading and stopped", st)
	}
	next, _ := agreed(t, others(nodes, leader), 10*s.h.TTL)
	took := time.Since(stopped)
	t.Logf("after shutdown %s leads %v later", next.id, took)
	if took > s.h.TTL/2 {
		t.Errorf("takeover after a shutdown took %v, want well under the TTL %v: was the lease released?", took, s.h.TTL)
	}
}

func testDuplicateIdentity(t *testing.T, s *suite) {
	twins := []*node{s.start(t, "twin"), s.start(t, "twin")}
	var leader, other *node
	eventually(t, 10*s.h.TTL, "one twin to lead", func() bool {
		st0, _ := twins[0].engine.Status()
		st1, _ := twins[1].engine.Status()
		if st0.IsLeader && st1.IsLeader {
			t.Fatal("both twins lead")
		}
		switch {
		case st0.IsLeader:
			leader, other = twins[0], twins[1]
		case st1.IsLeader:
			leader, other = twins[1], twins[0]
		}
		return leader != nil
	})
	eventually(t, 10*s.h.TTL, "the other twin to report the duplicate identity", func() bool {
		st, _ := other.engine.Status()
		if st.IsLeader || st.Leader != "" {
			t.Fatalf("the twin that does not lead reads %+v, want no leader named", st)
		}
		return st.DuplicateIdentity
	})
	if st, _ := leader.engine.Status(); !st.IsLeader || st.DuplicateIdentity {
		t.Errorf("the leading twin reads %+v, want leading without a duplicate flag", st)
	}
}

// candidacy starts one on b, failing the test on error.
func candidacy(t *testing.T, b election.Backend) election.Candidacy {
	t.Helper()
	c, _, err := b.Candidate(t.Context())
	if err != nil {
		t.Fatalf("Candidate: %v", err)
	}
	return c
}

// keepRenewing renews c every TTL/3 until the test ends, as the engine
// would, so that the candidacy outlives the test's waits.
func keepRenewing(t *testing.T, c election.Candidacy, ttl time.Duration) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_, _ = c.Renew(ctx)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// observeOnce returns the leader b reports first.
func observeOnce(t *testing.T, b election.Backend) election.Leader {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got election.Leader
	err := b.Observe(ctx, func(l election.Leader) {
		got = l
		cancel()
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Observe: %v", err)
	}
	return got
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		waitFor(t, 5*time.Millisecond)
	}
}

// waitFor lets time pass in a test that is about time: the backends'
// servers expire leases on their own clocks.
func waitFor(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-time.After(d):
	case <-t.Context().Done():
		t.Fatal("test ended while waiting")
	}
}

var unsafe = regexp.MustCompile(`[^A-Za-z0-9-]+`)

// electionName gives each subtest its own election on the shared servers.
func electionName(t *testing.T) string {
	n := strings.Trim(unsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(n) > 63 {
		n = n[len(n)-63:]
	}
	return strings.Trim(n, "-")
}

// logger logs through stderr at warning level, or debug with -v.
func logger(t *testing.T, id string) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name(), "node", id)
}

// errCutOff is what a cut-off backend answers.
var errCutOff = errors.New("electiontest: cut off from the backend")

// cutoff wraps a backend so that the test can cut one candidate off from
// the servers, like a partition or a crash: afterwards every call fails at
// once and nothing reaches the servers (no renewal, no release).
type cutoff struct {
	election.Backend
	once sync.Once
	cut  chan struct{}
}

func (c *cutoff) cutOff() { c.once.Do(func() { close(c.cut) }) }

func (c *cutoff) isCut() bool {
	select {
	case <-c.cut:
		return true
	default:
		return false
	}
}

// untilCut returns ctx, cancelled also when c is cut off.
func (c *cutoff) untilCut(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-c.cut:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (c *cutoff) Candidate(ctx context.Context) (election.Candidacy, election.Validity, error) {
	if c.isCut() {
		return nil, election.Validity{}, errCutOff
	}
	cand, v, err := c.Backend.Candidate(ctx)
	if err != nil {
		return nil, v, err
	}
	return &cutCandidacy{Candidacy: cand, c: c}, v, nil
}

func (c *cutoff) Observe(ctx context.Context, fn func(election.Leader)) error {
	if c.isCut() {
		return errCutOff
	}
	ctx, cancel := c.untilCut(ctx)
	defer cancel()
	err := c.Backend.Observe(ctx, fn)
	if c.isCut() {
		return errCutOff
	}
	return err
}

type cutCandidacy struct {
	election.Candidacy
	c *cutoff
}

func (cc *cutCandidacy) Campaign(ctx context.Context) (election.Term, error) {
	if cc.c.isCut() {
		return election.Term{}, errCutOff
	}
	cctx, cancel := cc.c.untilCut(ctx)
	defer cancel()
	term, err := cc.Candidacy.Campaign(cctx)
	if cc.c.isCut() {
		return election.Term{}, errCutOff
	}
	return term, err
}

func (cc *cutCandidacy) Renew(ctx context.Context) (election.Validity, error) {
	if cc.c.isCut() {
		return election.Validity{}, errCutOff
	}
	return cc.Candidacy.Renew(ctx)
}

func (cc *cutCandidacy) Resign(ctx context.Context) error {
	if cc.c.isCut() {
		return errCutOff
	}
	return cc.Candidacy.Resign(ctx)
}

// cutoffHandoff is a cutoff whose backend implements election.Handoff.
type cutoffHandoff struct{ *cutoff }

func (c *cutoffHandoff) handoff(cand election.Candidacy) (election.Handoff, election.Candidacy, error) {
	if c.isCut() {
		return nil, nil, errCutOff
	}
	if cc, ok := cand.(*cutCandidacy); ok {
		cand = cc.Candidacy
	}
	return c.Backend.(election.Handoff), cand, nil
}

func (c *cutoffHandoff) CheckSuccessor(ctx context.Context, cand election.Candidacy, to string) error {
	h, inner, err := c.handoff(cand)
	if err != nil {
		return err
	}
	return h.CheckSuccessor(ctx, inner, to)
}

func (c *cutoffHandoff) HandOver(ctx context.Context, cand election.Candidacy, to string) error {
	h, inner, err := c.handoff(cand)
	if err != nil {
		return err
	}
	return h.HandOver(ctx, inner, to)
}
