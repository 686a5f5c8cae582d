package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Engine runs one candidate: it campaigns, renews, steps down at its
// validity deadline, and publishes a Status on every change.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	status  *broadcaster
	resigns chan resignRequest
	running atomic.Bool

	// Observed leader, written by the observer goroutine.
	mu       sync.Mutex
	observed Leader
	seenAt   time.Time     // wall clock when observed was first seen
	observOK bool          // the observer delivered since its last error
	obsWake  chan struct{} // closed and replaced when observed changes
	backOK   bool          // the last grant/renew/campaign call succeeded

	// claimUntil is the instant (monotonic) after which IsLeader must read
	// false even if the engine loop has not yet run: a process that wakes
	// from a pause checks it before it says anything.
	claimUntil atomic.Pointer[time.Time]
}

type resignRequest struct {
	ctx   context.Context
	reply chan error
}

// New validates cfg and returns an engine ready to Run.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var caveats string
	if c, ok := cfg.Backend.(Caveats); ok {
		caveats = c.Caveats()
	}
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger.With("election", cfg.Election, "identity", cfg.Identity),
		resigns: make(chan resignRequest),
		obsWake: make(chan struct{}),
		status: newBroadcaster(Status{
			Election: cfg.Election,
			Backend:  cfg.Backend.Name(),
			Identity: cfg.Identity,
			TTL:      cfg.TTL,
			Caveats:  caveats,
		}, cfg.OnStatus),
	}
	e.setClaimUntil(time.Time{})
	return e, nil
}

// Status returns the latest status and a channel closed on the next change.
// IsLeader is re-checked against the validity deadline on every call.
func (e *Engine) Status() (Status, <-chan struct{}) {
	st, ch := e.status.Status()
	if st.IsLeader && !time.Now().Before(*e.claimUntil.Load()) {
		st.IsLeader = false
		st.Leader = ""
		st.FencingToken = 0
		st.Since = time.Time{}
	}
	return st, ch
}

// setClaimUntil publishes the instant after which IsLeader reads false.
// It stores a copy: readers must never see a variable the loop still writes.
func (e *Engine) setClaimUntil(t time.Time) { e.claimUntil.Store(&t) }

// Healthy reports whether the election loop is running.
func (e *Engine) Healthy() bool { return e.running.Load() }

// Resign gives up leadership now. The candidate campaigns again after the
// configured hold-off. It returns ErrNotLeader when there is nothing to give up.
func (e *Engine) Resign(ctx context.Context) error {
	if st, _ := e.Status(); !st.IsLeader {
		return ErrNotLeader
	}
	req := resignRequest{ctx: ctx, reply: make(chan error, 1)}
	select {
	case e.resigns <- req:
	case <-ctx.Done():
		return ctx.Err()
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
	defer e.running.Store(false)

	obsCtx, stopObserver := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.observe(obsCtx) })
	defer wg.Wait()
	defer stopObserver()

	retry := e.newBackoff()
	for ctx.Err() == nil {
		outcome := e.candidacy(ctx)
		switch outcome {
		case outcomeResigned:
			retry.reset()
			e.between(ctx, e.cfg.ResignHoldoff)
		case outcomeFailed:
			e.between(ctx, retry.next())
		default:
			retry.reset()
		}
	}
	return nil
}

type outcome int

const (
	outcomeEnded    outcome = iota // lost or expired; start again now
	outcomeFailed                  // the backend failed; back off
	outcomeResigned                // resigned on request; hold off
	outcomeShutdown                // ctx ended
)

// renewal is one renewer result.
type renewal struct {
	validity Validity
	err      error
}

type campaignResult struct {
	term Term
	err  error
}

// candidacy runs one candidacy from grant to loss, resignation or shutdown.
func (e *Engine) candidacy(ctx context.Context) outcome {
	cand, v, err := e.cfg.Backend.Candidate(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return outcomeShutdown
		}
		e.backendFailed("grant", err)
		return outcomeFailed
	}
	e.setBackendOK(true)

	cctx, cancel := context.WithCancel(ctx)
	renewals := make(chan renewal)
	campaigns := make(chan campaignResult, 1)
	var wg sync.WaitGroup
	wg.Go(func() { e.renew(cctx, cand, renewals) })
	wg.Go(func() {
		term, err := cand.Campaign(cctx)
		campaigns <- campaignResult{term, err}
	})

	var (
		deadline time.Time // zero: nothing held yet
		timer    = time.NewTimer(time.Hour)
		leading  bool
		token    int64
	)
	timer.Stop()
	extend := func(v Validity) {
		if v.IsZero() {
			return
		}
		d := v.Sent.Add(e.cfg.validity(v.TTL))
		if d.After(deadline) {
			deadline = d
			if leading {
				e.setClaimUntil(deadline)
			}
			timer.Reset(time.Until(deadline))
		}
	}
	extend(v)

	// end stops claiming leadership first, then cleans up the candidacy.
	end := func(reason string, res outcome) outcome {
		if leading {
			e.stepDown(reason)
			leading = false
		}
		cancel()
		wg.Wait()
		timer.Stop()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.ResignTimeout)
		defer rcancel()
		if err := cand.Resign(rctx); err != nil {
			e.cfg.Metrics.BackendError("resign")
			e.log.Warn("resign failed; the lease will expire on its own", "err", err)
		}
		return res
	}

	for {
		select {
		case <-ctx.Done():
			return end("shutdown", outcomeShutdown)

		case <-timer.C:
			if time.Now().Before(deadline) {
				timer.Reset(time.Until(deadline))
				continue
			}
			e.log.Warn("validity deadline passed without an acknowledged renewal; stepping down",
				"leading", leading)
			e.setBackendOK(false)
			return end("deadline", outcomeEnded)

		case r := <-renewals:
			if r.err != nil {
				e.backendFailed("renew", r.err)
				if errors.Is(r.err, ErrLost) {
					return end("lost", outcomeEnded)
				}
				continue
			}
			e.setBackendOK(true)
			extend(r.validity)

		case r := <-campaigns:
			if r.err != nil {
				if ctx.Err() != nil {
					return end("shutdown", outcomeShutdown)
				}
				e.backendFailed("campaign", r.err)
				res := outcomeFailed
				if errors.Is(r.err, ErrLost) {
					res = outcomeEnded
				}
				return end("lost", res)
			}
			extend(r.term.Validity)
			if !time.Now().Before(deadline) {
				e.log.Warn("won, but the validity deadline had already passed; starting over")
				return end("deadline", outcomeEnded)
			}
			leading, token = true, r.term.Token
			e.setClaimUntil(deadline)
			e.becomeLeader(token, r.term.Vacant, r.term.Kind)

		case req := <-e.resigns:
			if !leading {
				req.reply <- ErrNotLeader
				continue
			}
			e.log.Info("resigning on request")
			res := end("resigned", outcomeResigned)
			req.reply <- nil
			return res

		case <-e.newerTerm(leading, token):
			e.mu.Lock()
			newer := e.observed.Token > token
			e.mu.Unlock()
			if newer {
				// Someone else's term began after ours: our key is gone.
				e.log.Warn("a newer term was observed while leading; stepping down")
				return end("lost", outcomeEnded)
			}
		}
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
		v, err := cand.Renew(rctx)
		cancel()
		select {
		case out <- renewal{v, err}:
		case <-ctx.Done():
			return
		}
	}
}

// becomeLeader publishes this candidate as leader.
func (e *Engine) becomeLeader(token int64, vacant time.Time, kind string) {
	now := time.Now()
	e.status.update(func(s *Status) {
		s.IsLeader = true
		s.Leader = e.cfg.Identity
		s.FencingToken = token
		s.Since = now
		s.Ready = true
	})
	e.cfg.Metrics.SetLeader(true)
	if !vacant.IsZero() {
		e.cfg.Metrics.Takeover(now.Sub(vacant), kind)
	}
	e.log.Info("became leader", "token", token, "after", kind)
}

// stepDown publishes that this candidate no longer leads. It runs before
// any backend call, so an unreachable backend cannot delay it.
func (e *Engine) stepDown(reason string) {
	e.setClaimUntil(time.Time{})
	e.status.update(func(s *Status) {
		s.IsLeader = false
		e.applyObserved(s)
	})
	e.cfg.Metrics.SetLeader(false)
	e.cfg.Metrics.SteppedDown(reason)
	e.log.Info("stepped down", "reason", reason)
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

// observe follows the leader as the backend sees it, retrying on errors.
func (e *Engine) observe(ctx context.Context) {
	retry := e.newBackoff()
	for ctx.Err() == nil {
		err := e.cfg.Backend.Observe(ctx, func(l Leader) {
			retry.reset()
			e.mu.Lock()
			if l != e.observed {
				e.observed = l
				e.seenAt = time.Now()
				close(e.obsWake)
				e.obsWake = make(chan struct{})
			}
			e.observOK = true
			e.mu.Unlock()
			e.publishObserved()
		})
		if ctx.Err() != nil {
			return
		}
		e.cfg.Metrics.BackendError("observe")
		e.log.Warn("observing the leader failed; retrying", "err", err)
		e.mu.Lock()
		e.observOK = false
		e.mu.Unlock()
		e.publishObserved()
		sleep(ctx, retry.next())
	}
}

// sleep blocks for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (e *Engine) publishObserved() {
	e.status.update(func(s *Status) {
		if !s.IsLeader {
			e.applyObserved(s)
		} else {
			e.mu.Lock()
			s.Ready = e.observOK || e.backOK
			e.mu.Unlock()
		}
	})
}

// applyObserved fills a follower's status from the observed leader. Our own
// identity as observed leader while we do not lead means a key of ours that
// has not been verified or has not expired yet; it is reported as unknown,
// so an application that compares the name with its own never acts on it.
func (e *Engine) applyObserved(s *Status) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s.Leader, s.FencingToken, s.Since = e.observed.ID, e.observed.Token, e.seenAt
	if s.Leader == "" || s.Leader == e.cfg.Identity {
		s.Leader, s.FencingToken, s.Since = "", 0, time.Time{}
	}
	s.Ready = e.observOK && e.backOK
}

func (e *Engine) setBackendOK(ok bool) {
	e.mu.Lock()
	changed := e.backOK != ok
	e.backOK = ok
	e.mu.Unlock()
	if changed {
		e.publishObserved()
	}
}

func (e *Engine) backendFailed(op string, err error) {
	e.cfg.Metrics.BackendError(op)
	e.log.Warn("backend call failed", "op", op, "err", err)
	if !errors.Is(err, ErrLost) {
		e.setBackendOK(false)
	}
}

// between waits between candidacies for d or until ctx ends. Nothing is
// led meanwhile, so a resign request is answered at once.
func (e *Engine) between(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case req := <-e.resigns:
			req.reply <- ErrNotLeader
		}
	}
}

// backoff is capped exponential backoff with full jitter on the upper half.
type backoff struct {
	min, max, cur time.Duration
}

func (e *Engine) newBackoff() *backoff {
	return &backoff{min: e.cfg.RetryMin, max: e.cfg.RetryMax}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	half := b.cur / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// String describes the engine for logs.
func (e *Engine) String() string {
	return fmt.Sprintf("election %q as %q on %s", e.cfg.Election, e.cfg.Identity, e.cfg.Backend.Name())
}
