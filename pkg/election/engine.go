package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election/internal/retry"
)

// Engine runs one candidate: it campaigns, renews, steps down at its
// validity deadline, and publishes a Status on every change.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	status  *broadcaster
	resigns chan resignRequest
	running atomic.Bool

	// mu guards what the loop and the observer goroutine share; publish
	// builds the Status from it.
	mu    sync.Mutex
	state State // written only by the become* functions
	// While state is StateLeading: the term's token and when it began.
	token int64
	since time.Time
	// The leader as the observer last saw it.
	observed Leader
	seenAt   time.Time     // wall clock when observed was first seen
	obsWake  chan struct{} // closed and replaced when observed changes
	// Backend health: a non-empty problem means the last call of that kind
	// failed (calls: grant, campaign, renew; obs: observe).
	callProblem string
	obsProblem  string
	obsOK       bool // the observer delivered since it (re)started
	// twin is set when another instance with our identity is seen; twinTimer
	// fires DuplicateAfter after our name was first seen leading without us.
	twin      bool
	twinTimer *time.Timer
	// queued: this candidacy is in line with its generation published;
	// waiting candidates read ready only then while generations are on.
	queued bool

	// epoch is the origin of the engine's timeline (see now).
	epoch time.Time
	// claimUntil is the instant (on the engine's timeline, in nanoseconds)
	// after which IsLeader must read false even if the engine loop has not
	// yet run: a process that wakes from a pause or a suspend checks it
	// before it says anything. 0 claims nothing.
	claimUntil atomic.Int64
	// claimWake wakes the status's readers at claimUntil; loop only.
	claimWake *time.Timer
	// beat is when the loop last showed it is alive (time.Since(epoch), in
	// nanoseconds), through the status path.
	beat atomic.Int64
}

type resignRequest struct {
	ctx   context.Context
	to    string // the chosen successor; empty: whoever is next
	reply chan error
}

// New validates cfg and returns an engine ready to Run.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Backend == nil {
		return nil, errors.New("election: backend is required")
	}
	var caveats string
	if c, ok := cfg.Backend.(Caveats); ok {
		caveats = c.Caveats()
	}
	_, handoff := cfg.Backend.(Handoff)
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger.With("election", cfg.Election, "identity", cfg.Identity),
		resigns: make(chan resignRequest),
		obsWake: make(chan struct{}),
		status: newBroadcaster(Status{
			Election:   cfg.Election,
			Backend:    cfg.Backend.Name(),
			Identity:   cfg.Identity,
			TTL:        cfg.TTL,
			Caveats:    caveats,
			Switchover: handoff,
			Generation: cfg.Generation,
			State:      StateStopped,
		}, cfg.OnStatus),
		epoch: time.Now(),
	}
	return e, nil
}

// now is the current instant on the engine's timeline: monotonic time since
// the engine was built plus the time the machine has spent suspended, so
// that a validity window shrinks by every suspend it overlaps.
func (e *Engine) now() time.Duration { return time.Since(e.epoch) + e.cfg.Clock.Suspended() }

// deadlineOf returns the instant on the engine's timeline after which v no
// longer proves anything. suspended is the Clock's reading taken before the
// request that v acknowledges was sent: any suspend after it is counted,
// which can only move the deadline earlier.
func (e *Engine) deadlineOf(v Validity, suspended time.Duration) time.Duration {
	return v.Sent.Sub(e.epoch) + suspended + e.cfg.validity(v.TTL)
}

// Status returns the latest status and a channel closed on the next change.
// IsLeader is re-checked against the validity deadline on every call.
func (e *Engine) Status() (Status, <-chan struct{}) {
	st, ch := e.status.Status()
	if st.IsLeader && e.now() >= time.Duration(e.claimUntil.Load()) {
		st.IsLeader = false
		st.Leader = ""
		st.FencingToken = 0
		st.Since = time.Time{}
		st.State = StateCampaigning
	}
	return st, ch
}

// setClaimUntil publishes the instant after which IsLeader reads false
// (0: claim nothing), and arms a timer that wakes every reader of the status
// at that instant. The loop steps down then too, but the wake-up does not
// wait for it: a reader blocked on the change channel (/watch, the pod
// labels, WhileLeading) re-reads the status, which Status re-checks against
// the deadline, even if the loop or a status writer is stuck. Only the loop
// calls it.
func (e *Engine) setClaimUntil(t time.Duration) {
	e.claimUntil.Store(int64(t))
	if t == 0 {
		if e.claimWake != nil {
			e.claimWake.Stop()
		}
		return
	}
	d := t - e.now()
	if e.claimWake == nil {
		e.claimWake = time.AfterFunc(d, e.status.wake)
		return
	}
	e.claimWake.Reset(d)
}

// Healthy reports whether the election loop is running and not stuck: it
// shows it is alive, through the status path, at least every check interval
// (500 ms at most), and it never waits on anything longer than a candidacy
// start or a resignation (both bounded). A loop or a status path that has
// not moved for longer than that (a blocked OnStatus hook, a deadlock) is
// reported, so a liveness probe can restart the process.
func (e *Engine) Healthy() bool {
	if !e.running.Load() {
		return false
	}
	return time.Since(e.epoch)-time.Duration(e.beat.Load()) <= e.cfg.stallAfter()
}

// heartbeat records that the loop is alive. It passes through the status
// lock, so a status path that is stuck makes the loop look stuck too.
func (e *Engine) heartbeat() {
	e.status.touch()
	e.beat.Store(int64(time.Since(e.epoch)))
}

// Resign gives up leadership now. The candidate campaigns again after the
// configured hold-off. It returns ErrNotLeader when there is nothing to give
// up, at once, whatever the loop is doing (a step-down waits for nothing,
// so a candidate that stepped down says so without asking the backend).
func (e *Engine) Resign(ctx context.Context) error {
	return e.request(ctx, resignRequest{ctx: ctx, reply: make(chan error, 1)})
}

// HandOver hands leadership to the candidate named to and to no one else
// (a planned switchover), if the backend implements Handoff. It returns
// once the leader's term has ended and to is the only candidate that can
// win the next one (it leads as soon as it sees that, within milliseconds
// on a healthy backend). The old leader then holds off, as after Resign,
// and queues again behind it.
//
// Errors: ErrNotLeader when this candidate does not lead;
// ErrHandoffUnsupported when the backend cannot do it; ErrNotInLine
// (wrapped, saying why) when to is not a live candidate of this election,
// in which case nothing changed. If to left the line between the check and
// the handover, this candidate stops claiming for that instant and then
// leads again with the same token. If the backend fails during the
// handover the outcome is unknown: the leader steps down and holds off as
// after Resign, and the successor is the chosen one or whoever is next.
func (e *Engine) HandOver(ctx context.Context, to string) error {
	if to == "" {
		return fmt.Errorf("%w: no successor named", ErrNotInLine)
	}
	return e.request(ctx, resignRequest{ctx: ctx, to: to, reply: make(chan error, 1)})
}

// request passes a resign or handover request to the loop and waits for
// its answer.
func (e *Engine) request(ctx context.Context, req resignRequest) error {
	for sent := false; !sent; {
		st, changed := e.Status()
		if !st.IsLeader {
			return ErrNotLeader
		}
		select {
		case e.resigns <- req:
			sent = true
		case <-changed:
			// Stepped down meanwhile? Look again.
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run campaigns until ctx ends, then stops claiming leadership, resigns
// within the resign timeout and returns nil.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("election: engine already running")
	}
	e.heartbeat()
	defer e.running.Store(false)
	defer e.becomeStopped()
	defer e.setClaimUntil(0)

	obsCtx, stopObserver := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.observe(obsCtx) })
	defer wg.Wait()
	defer stopObserver()

	backoff := retry.New(e.cfg.RetryMin, e.cfg.RetryMax)
	for ctx.Err() == nil {
		if el, changed := e.cfg.eligibility(); !el.Eligible {
			e.becomeStandingAside(el)
			e.standAside(ctx, changed)
			continue
		}
		switch e.candidacy(ctx) {
		case outcomeResigned:
			backoff.Reset()
			e.becomeHoldingOff()
			e.between(ctx, e.cfg.ResignHoldoff)
		case outcomeFailed:
			e.becomeBackingOff()
			e.between(ctx, backoff.Next())
		case outcomeEnded, outcomeStandAside:
			backoff.Reset()
		}
	}
	return nil
}

type outcome int

const (
	outcomeEnded      outcome = iota // lost or expired; start again now
	outcomeFailed                    // the backend failed; back off
	outcomeResigned                  // resigned on request; hold off
	outcomeShutdown                  // ctx ended
	outcomeStandAside                // the gate closed; stand aside until it opens
)

// renewal is one renewer result.
type renewal struct {
	validity  Validity
	suspended time.Duration // Clock reading before the request was sent
	err       error
}

type campaignResult struct {
	term Term
	err  error
}

// candidacy runs one candidacy from grant to loss, resignation or shutdown.
func (e *Engine) candidacy(ctx context.Context) outcome {
	el, gate := e.cfg.eligibility()
	if !el.Eligible {
		return outcomeStandAside
	}
	e.becomeCampaigning()
	suspended := e.cfg.Clock.Suspended()
	gctx, gcancel := context.WithTimeout(ctx, e.cfg.candidateTimeout())
	cand, v, err := e.cfg.Backend.Candidate(gctx)
	gcancel()
	if err != nil {
		if ctx.Err() != nil {
			return outcomeShutdown
		}
		e.callFailed("grant", err)
		return outcomeFailed
	}
	e.callAnswered()
	e.recordCandidacy(cand)

	cctx, cancel := context.WithCancel(ctx)
	renewals := make(chan renewal)
	campaigns := make(chan campaignResult, 1)
	var wg sync.WaitGroup
	wg.Go(func() { e.renew(cctx, cand, renewals) })
	// The campaign's proof comes from a request sent after this reading.
	campaignSuspended := e.cfg.Clock.Suspended()
	wg.Go(func() {
		term, err := cand.Campaign(cctx)
		campaigns <- campaignResult{term, err}
	})
	newer := e.watchNewer(cctx, cand, &wg)

	var (
		deadline time.Duration // on the engine's timeline; 0: nothing held yet
		timer    = time.NewTimer(time.Hour)
		check    = time.NewTicker(e.cfg.checkInterval())
		leading  bool
		led      bool // leading was true at some point of this candidacy
		token    int64
		term     Term // the term led, while leading
	)
	timer.Stop()
	defer check.Stop()
	extend := func(v Validity, suspended time.Duration) {
		if v.IsZero() {
			return
		}
		if d := e.deadlineOf(v, suspended); d > deadline {
			deadline = d
			if leading {
				e.setClaimUntil(deadline)
			}
			timer.Reset(deadline - e.now())
		}
	}
	extend(v, suspended)

	// end stops claiming leadership first, then cleans up the candidacy.
	end := func(reason StepDownReason, res outcome) outcome {
		wasLeading := leading
		if leading {
			e.stepDown(reason, res)
			leading = false
		}
		cancel()
		wg.Wait()
		timer.Stop()
		if led && e.cfg.BeforeRelease != nil {
			// Work done under the term stops before a successor can win.
			e.cfg.BeforeRelease()
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.ResignTimeout)
		defer rcancel()
		if wasLeading && res == outcomeShutdown && e.now() < deadline && e.handOverToNewer(rctx, cand) {
			return res
		}
		if err := cand.Resign(rctx); err != nil {
			e.cfg.Metrics.BackendError("resign")
			e.log.Warn("resign failed; the lease will expire on its own", "err", err)
		}
		return res
	}

	// expired ends the candidacy at its validity deadline.
	expired := func() outcome {
		// Step down before anything that could block (even a log write).
		if leading {
			e.stepDown(ReasonDeadline, outcomeEnded)
			leading = false
		}
		e.callFailed("renew", errors.New("validity deadline passed without an acknowledged renewal"))
		return end(ReasonDeadline, outcomeEnded)
	}

	for {
		select {
		case <-ctx.Done():
			return end(ReasonShutdown, outcomeShutdown)

		case <-check.C:
			// The timer, on CLOCK_MONOTONIC, fires late by any suspend;
			// this check counts it.
			e.heartbeat()
			if deadline == 0 || e.now() < deadline {
				continue
			}
			return expired()

		case <-timer.C:
			if now := e.now(); now < deadline {
				timer.Reset(deadline - now)
				continue
			}
			return expired()

		case r := <-renewals:
			if r.err != nil {
				if errors.Is(r.err, ErrLost) {
					res := end(ReasonLost, outcomeEnded)
					e.callFailed("renew", r.err)
					return res
				}
				e.callFailed("renew", r.err)
				continue
			}
			e.callAnswered()
			extend(r.validity, r.suspended)

		case r := <-campaigns:
			if r.err != nil {
				if ctx.Err() != nil {
					return end(ReasonShutdown, outcomeShutdown)
				}
				e.callFailed("campaign", r.err)
				res := outcomeFailed
				if errors.Is(r.err, ErrLost) {
					res = outcomeEnded
				}
				return end(ReasonLost, res)
			}
			e.callAnswered()
			extend(r.term.Validity, campaignSuspended)
			if e.now() >= deadline {
				e.log.Warn("won, but the validity deadline had already passed; starting over")
				return end(ReasonDeadline, outcomeEnded)
			}
			leading, led, token, term = true, true, r.term.Token, r.term
			e.setClaimUntil(deadline)
			e.becomeLeading(r.term)

		case req := <-e.resigns:
			if !leading {
				req.reply <- ErrNotLeader
				continue
			}
			if req.to != "" {
				handed, res := e.handOver(req, cand, term, deadline, &leading, end)
				if !handed {
					// Not handed over: still leading, same term.
					continue
				}
				return res
			}
			e.log.Info("resigning on request")
			res := end(ReasonResigned, outcomeResigned)
			req.reply <- nil
			return res

		case <-gate:
			el, gate = e.cfg.eligibility()
			if el.Eligible {
				e.publish() // the health word may have changed
				continue
			}
			if leading {
				e.log.Warn("the health gate closed; stepping down so a healthy peer leads", "why", el.Reason)
			} else {
				e.log.Info("the health gate closed; leaving the queue", "why", el.Reason)
			}
			return end(ReasonUnhealthy, outcomeStandAside)
		case <-newer:
			newer = nil
			if leading {
				continue // a leader leads until it goes; its successor is then the newer one
			}
			e.log.Info("a candidate of a newer generation is queued behind this one; queueing again behind it",
				"generation", e.cfg.Generation)
			return end(ReasonLost, outcomeEnded)

		case <-e.newerTerm(leading, token):
			e.mu.Lock()
			newer := e.observed.Token > token
			e.mu.Unlock()
			if newer {
				// Someone else's term began after ours: our key is gone.
				e.log.Warn("a newer term was observed while leading; stepping down")
				return end(ReasonLost, outcomeEnded)
			}
		}
	}
}

// handOver serves a switchover request while leading. It reports whether
// the term ended, and then the candidacy's outcome; otherwise this
// candidate still leads the same term. It answers the request either way.
func (e *Engine) handOver(req resignRequest, cand Candidacy, term Term, deadline time.Duration,
	leading *bool, end func(StepDownReason, outcome) outcome) (bool, outcome) {
	h, ok := e.cfg.Backend.(Handoff)
	if !ok {
		req.reply <- ErrHandoffUnsupported
		return false, 0
	}
	if req.to == e.cfg.Identity {
		req.reply <- fmt.Errorf("%w: %q is this candidate, which leads already", ErrNotInLine, req.to)
		return false, 0
	}
	// The loop waits for these calls: they end by the validity deadline,
	// so no claim outlives it.
	ctx, cancel := context.WithTimeout(req.ctx, deadline-e.now())
	defer cancel()
	if err := h.CheckSuccessor(ctx, cand, req.to); err != nil {
		req.reply <- err
		return false, 0
	}
	// Stop claiming before the backend can make the successor leader.
	e.stepDown(ReasonHandedOver, outcomeResigned)
	*leading = false
	err := h.HandOver(ctx, cand, req.to)
	switch {
	case err == nil:
		e.log.Info("handed over on request", "to", req.to)
		res := end(ReasonHandedOver, outcomeResigned)
		req.reply <- nil
		return true, res
	case errors.Is(err, ErrNotInLine) && e.now() < deadline:
		// Nothing changed in the backend: the term is still ours.
		e.log.Info("the successor left the line during the handover; leading on", "to", req.to, "err", err)
		*leading = true
		e.setClaimUntil(deadline)
		e.becomeCampaigning()
		e.becomeLeading(Term{Token: term.Token, Validity: term.Validity})
		req.reply <- err
		return false, 0
	default:
		// Unknown outcome: the successor may lead already. Hold off as
		// after a resign (the step-down above went to that state).
		e.callFailed("resign", err)
		res := end(ReasonHandedOver, outcomeResigned)
		req.reply <- err
		return true, res
	}
}

// watchNewer returns a channel closed when the backend reports a newer
// generation queued behind cand; nil when generations are off.
func (e *Engine) watchNewer(ctx context.Context, cand Candidacy, wg *sync.WaitGroup) <-chan struct{} {
	if !e.generations() {
		return nil
	}
	g := e.cfg.Backend.(Generations)
	ch := make(chan struct{})
	queued := func() {
		e.mu.Lock()
		e.queued = true
		e.mu.Unlock()
		e.publish()
	}
	wg.Go(func() {
		err := g.WaitNewer(ctx, cand, e.cfg.Generation, queued)
		if err == nil {
			close(ch)
			return
		}
		if ctx.Err() == nil {
			// Only the rollout optimisation is lost; the election goes on.
			e.log.Debug("watching generations failed", "err", err)
		}
	})
	return ch
}

// generations reports whether generations are on.
func (e *Engine) generations() bool {
	_, ok := e.cfg.Backend.(Generations)
	return ok && e.cfg.Generation > 0
}

// handOverToNewer, at shutdown of a leader that has stepped down, hands
// over to the first candidate of the newest generation in line, if there
// is one newer than this one and the backend can hand over. It reports
// whether it did; otherwise the caller resigns as usual.
func (e *Engine) handOverToNewer(ctx context.Context, cand Candidacy) bool {
	h, ok := e.cfg.Backend.(Handoff)
	if !ok || !e.generations() {
		return false
	}
	to, err := e.cfg.Backend.(Generations).NewerSuccessor(ctx, cand, e.cfg.Generation)
	if err != nil || to == "" {
		if err != nil {
			e.log.Debug("finding a newer-generation successor failed; resigning to whoever is next", "err", err)
		}
		return false
	}
	if err := h.HandOver(ctx, cand, to); err != nil {
		e.log.Info("handing over to a newer generation failed; resigning to whoever is next", "to", to, "err", err)
		return false
	}
	e.log.Info("handed over to a newer generation at shutdown", "to", to)
	return true
}

// recordCandidacy passes a new candidacy's handle to OnCandidacy.
func (e *Engine) recordCandidacy(cand Candidacy) {
	r, ok := e.cfg.Backend.(Reclaimer)
	if !ok || e.cfg.OnCandidacy == nil {
		return
	}
	if h := r.Handle(cand); h != "" {
		e.cfg.OnCandidacy(h)
	}
}

// renew refreshes the candidacy every RenewInterval and reports each result.
func (e *Engine) renew(ctx context.Context, cand Candidacy, out chan<- renewal) {
	tick := time.NewTicker(e.cfg.RenewInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, e.cfg.RenewInterval)
		suspended := e.cfg.Clock.Suspended()
		v, err := cand.Renew(rctx)
		cancel()
		select {
		case out <- renewal{v, suspended, err}:
		case <-ctx.Done():
			return
		}
	}
}

// The become* functions are the only writers of e.state, each the only way
// into its state; they log the edge, publish, and feed the metrics.

// becomeCampaigning starts a candidacy.
func (e *Engine) becomeCampaigning() { e.enter(StateCampaigning, func() { e.queued = false }) }

// becomeLeading publishes this candidate as leader of term.
func (e *Engine) becomeLeading(term Term) {
	now := time.Now()
	e.enter(StateLeading, func() { e.token, e.since = term.Token, now })
	e.cfg.Metrics.SetLeader(true)
	if !term.Vacant.IsZero() {
		e.cfg.Metrics.Takeover(now.Sub(term.Vacant), term.Kind)
	}
	e.log.Info("became leader", "token", term.Token, "after", term.Kind)
}

// stepDown publishes that this candidate no longer leads. It runs before
// any backend call, so an unreachable backend cannot delay it. The loop
// then cleans up and enters its next state.
func (e *Engine) stepDown(reason StepDownReason, next outcome) {
	e.setClaimUntil(0)
	to := StateCampaigning
	switch next {
	case outcomeResigned:
		to = StateHoldingOff
	case outcomeShutdown:
		to = StateStopped
	case outcomeFailed:
		to = StateBackingOff
	case outcomeStandAside:
		to = StateStandingAside
	}
	e.enter(to, func() { e.token, e.since = 0, time.Time{} })
	e.cfg.Metrics.SetLeader(false)
	e.cfg.Metrics.SteppedDown(reason)
	e.log.Info("stepped down", "reason", string(reason))
}

// becomeHoldingOff waits after a resignation on request.
func (e *Engine) becomeHoldingOff() { e.enter(StateHoldingOff, nil) }

// becomeBackingOff waits after a backend failure.
func (e *Engine) becomeBackingOff() { e.enter(StateBackingOff, nil) }

// becomeStandingAside records that the gate keeps this candidate out of
// the election; el says why.
func (e *Engine) becomeStandingAside(el Eligibility) {
	e.mu.Lock()
	was := e.state
	e.mu.Unlock()
	if was != StateStandingAside {
		e.log.Info("standing aside: not a candidate until the health gate opens", "why", el.Reason)
	}
	e.enter(StateStandingAside, nil)
}

// standAside waits until the gate's verdict changes or ctx ends. Nothing
// is led meanwhile, so a resign request is answered at once.
func (e *Engine) standAside(ctx context.Context, changed <-chan struct{}) {
	check := time.NewTicker(e.cfg.checkInterval())
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			return
		case <-check.C:
			e.heartbeat()
		case req := <-e.resigns:
			req.reply <- ErrNotLeader
		}
	}
}

// becomeStopped marks the end of Run.
func (e *Engine) becomeStopped() {
	e.enter(StateStopped, func() {
		if e.twinTimer != nil {
			e.twinTimer.Stop()
		}
	})
}

// enter moves to state s (running change under the lock) and publishes.
// An edge missing from the transition table is a bug in the loop; it is
// logged, and the tests fail on it.
func (e *Engine) enter(s State, change func()) {
	e.mu.Lock()
	from := e.state
	e.state = s
	if change != nil {
		change()
	}
	e.mu.Unlock()
	e.publish() // before any log write: a full stderr pipe must not delay a step-down
	if !CanTransition(from, s) {
		e.log.Error("illegal state transition; please report this bug", "from", from.String(), "to", s.String())
	}
	if from != s {
		e.log.Debug("state", "from", from.String(), "to", s.String())
	}
}

// publish rebuilds the status from the engine's fields.
func (e *Engine) publish() {
	e.status.update(func(s *Status) {
		e.mu.Lock()
		defer e.mu.Unlock()
		// Under the status lock, so the gauge follows the stream's order.
		defer func() { e.cfg.Metrics.SetState(s.State) }()
		s.State = e.state
		s.Problem = e.problem()
		el, _ := e.cfg.eligibility()
		s.Health, s.NotStanding = el.Health, ""
		if e.state == StateStandingAside {
			s.NotStanding = el.Reason
		}
		s.DuplicateIdentity = e.twin
		if e.state == StateLeading {
			s.IsLeader, s.Leader, s.FencingToken, s.Since = true, e.cfg.Identity, e.token, e.since
			// Its own renewals prove the leader's claim even while the
			// observer fails.
			s.Ready = true
			return
		}
		s.IsLeader = false
		s.Ready = e.obsOK && e.obsProblem == "" && e.callProblem == "" && (e.queued || !e.generations())
		s.Leader, s.FencingToken, s.Since = "", 0, time.Time{}
		// Not ready means the last leader known may be gone: name nobody.
		// Our own identity as observed leader while we do not lead is a key
		// of ours not yet verified or not yet expired (or a twin's): it is
		// reported as unknown, so an application that compares the name
		// with its own never acts on it.
		if s.Ready && e.observed.ID != "" && e.observed.ID != e.cfg.Identity {
			s.Leader, s.FencingToken, s.Since = e.observed.ID, e.observed.Token, e.seenAt
			if s.State == StateCampaigning {
				s.State = StateFollowing
			}
		}
	})
}

// newerTerm returns a channel that is ready when the observer has seen a
// term newer than the one this candidate leads, or has seen any change that
// must be checked; nil while not leading.
func (e *Engine) newerTerm(leading bool, token int64) <-chan struct{} {
	if !leading {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.observed.Token > token {
		ready := make(chan struct{})
		close(ready)
		return ready
	}
	return e.obsWake
}

// observe follows the leader as the backend sees it. The backend returns
// on failure; the engine retries here with its one backoff.
func (e *Engine) observe(ctx context.Context) {
	backoff := retry.New(e.cfg.RetryMin, e.cfg.RetryMax)
	for ctx.Err() == nil {
		err := e.cfg.Backend.Observe(ctx, func(l Leader) {
			backoff.Reset()
			e.observedLeader(l)
		})
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("observing ended without an error")
		}
		e.cfg.Metrics.BackendError("observe")
		e.mu.Lock()
		e.obsOK = false
		changed := e.noteProblem(&e.obsProblem, err)
		e.mu.Unlock()
		e.logFailure("observe", err, changed)
		e.publish()
		_ = retry.Sleep(ctx, backoff.Next())
	}
}

// observedLeader records a report of the observer.
func (e *Engine) observedLeader(l Leader) {
	e.mu.Lock()
	if l != e.observed {
		e.observed = l
		e.seenAt = time.Now()
		close(e.obsWake)
		e.obsWake = make(chan struct{})
		e.checkTwin()
	}
	e.obsOK = true
	before := e.problem()
	e.obsProblem = ""
	recovered := before != "" && e.problem() == ""
	e.mu.Unlock()
	if recovered {
		e.log.Info("the backend answers again")
	}
	e.publish()
}

// checkTwin arms or disarms the duplicate-identity timer after a change of
// the observed leader. Called with e.mu held.
func (e *Engine) checkTwin() {
	if e.twinTimer != nil {
		e.twinTimer.Stop()
		e.twinTimer = nil
	}
	ours := e.observed.ID == e.cfg.Identity
	if !ours {
		if e.twin {
			e.twin = false
			e.log.Info("no other instance with this identity is seen any more")
		}
		return
	}
	if e.twin {
		return
	}
	seen := e.observed
	e.twinTimer = time.AfterFunc(e.cfg.DuplicateAfter, func() {
		e.mu.Lock()
		dup := e.observed == seen && !(e.state == StateLeading && e.token == seen.Token)
		if dup && !e.twin {
			e.twin = true
			e.log.Warn("another instance runs with this identity: it holds a term this instance does not; "+
				"give every instance its own identity (the pod name)", "token", seen.Token, "for", e.cfg.DuplicateAfter.String())
		}
		e.mu.Unlock()
		if dup {
			e.publish()
		}
	})
}

// callFailed records a failed grant, campaign or renew.
func (e *Engine) callFailed(op string, err error) {
	e.cfg.Metrics.BackendError(op)
	if errors.Is(err, ErrLost) {
		// The backend answered: the candidacy is gone.
		e.log.Info("candidacy lost", "op", op, "err", err)
		return
	}
	e.mu.Lock()
	changed := e.noteProblem(&e.callProblem, err)
	e.mu.Unlock()
	e.logFailure(op, err, changed)
	e.publish()
}

// callAnswered records a successful grant, campaign or renew.
func (e *Engine) callAnswered() {
	e.mu.Lock()
	had := e.callProblem != ""
	before := e.problem()
	e.callProblem = ""
	recovered := before != "" && e.problem() == ""
	e.mu.Unlock()
	if recovered {
		e.log.Info("the backend answers again")
	}
	if had {
		e.publish()
	}
}

// noteProblem sets *p (callProblem or obsProblem) from err and reports
// whether the backend's health as a whole changed, which is when a
// failure is worth a warning. Called with e.mu held.
func (e *Engine) noteProblem(p *string, err error) bool {
	problem := ProblemUnreachable
	switch {
	case errors.Is(err, ErrDenied):
		problem = ProblemDenied
	case errors.Is(err, ErrMisconfigured):
		problem = ProblemMisconfigured
	}
	before := e.problem()
	*p = problem
	return e.problem() != before
}

// problem is the backend's health as Status.Problem shows it. Called with
// e.mu held.
func (e *Engine) problem() string {
	if e.callProblem != "" {
		return e.callProblem
	}
	return e.obsProblem
}

// logFailure logs a backend failure at warning level when it changes the
// backend's health, and at debug level while it persists, so an outage is
// reported at once and then only when it changes.
func (e *Engine) logFailure(op string, err error, changed bool) {
	if changed {
		e.log.Warn("backend call failed; retrying with backoff, and logging again only when this changes",
			"op", op, "problem", e.currentProblem(), "err", err)
		return
	}
	e.log.Debug("backend call failed", "op", op, "err", err)
}

func (e *Engine) currentProblem() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.problem()
}

// between waits between candidacies for d or until ctx ends. Nothing is
// led meanwhile, so a resign request is answered at once.
func (e *Engine) between(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	_, gate := e.cfg.eligibility()
	check := time.NewTicker(e.cfg.checkInterval())
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-gate:
			// Show the new health word; the loop acts on it afterwards.
			_, gate = e.cfg.eligibility()
			e.publish()
		case <-check.C:
			e.heartbeat()
		case req := <-e.resigns:
			req.reply <- ErrNotLeader
		}
	}
}

// String describes the engine for logs.
func (e *Engine) String() string {
	return fmt.Sprintf("election %q as %q on %s", e.cfg.Election, e.cfg.Identity, e.cfg.Backend.Name())
}
