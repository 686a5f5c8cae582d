package chaos

import (
	"fmt"
	"slices"
	"time"

	"github.com/leader-elector/leader-elector/pkg/history"
)

// Result is what Check found in one trial.
type Result struct {
	// Violations describes every safety or liveness violation; empty means
	// the trial passed.
	Violations []string

	Overlaps        int // leadership claims that overlapped (violations)
	StaleWakes      int // overlaps with a process paused past its deadline (expected, see Check)
	TokenViolations int // a term whose token was not above its predecessor's
	// KnownRegressions are token regressions that the documented limit of
	// Redis without persistence explains (not violations).
	KnownRegressions int
	Accepted         int // register writes accepted
	Rejected         int // stale writes the fence rejected
	StaleAccepted    int // stale writes accepted (violations)
	Unowned          int // accepted writes whose writer held no such term when it answered (violations)
	Races            int // sidecar processes that reported a data race (violations)
	// Terms counts the distinct terms claimed: (identity, token) pairs.
	Terms int
	// Settled are the rounds' times to one agreed leader after the heal
	// (negative: none); Handovers the handovers' times to the next term.
	Settled, Handovers []time.Duration
	SettleViolations   int // rounds without one agreed leader within their bound
	// NotDegraded counts fail-history targets whose /status did not report
	// the failing history (violations).
	NotDegraded int

	// RestartToLeader: for each sidecar-restart of the leader, the time
	// from the SIGKILL to the next claim of leadership by anyone.
	RestartToLeader []time.Duration
	Rollouts        []RolloutResult
	GateOverlaps    int             // episodes with two pods' gate True (violations)
	GateHandover    []time.Duration // gate fault → another pod's gate True
}

// Passed reports whether the trial found no violation.
func (r Result) Passed() bool { return len(r.Violations) == 0 }

func (r *Result) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

// claim is one leadership interval of one run, closed. An observed claim
// comes from the run's client's polls inside a gap of its history (see
// gapClaims), not from its history.
type claim struct {
	run *Run
	history.Interval
	observed bool
}

func (c claim) String() string {
	src := ""
	if c.observed {
		src = " (observed by polls; its history failed)"
	}
	return fmt.Sprintf("%s token %d [%d, %d]%s", c.run.Name(), c.Token, c.Start, c.End, src)
}

func claims(rec *Record) []claim {
	var out []claim
	for i := range rec.Runs {
		r := &rec.Runs[i]
		if len(r.Gaps) > 0 {
			out = append(out, gapClaims(rec, r)...)
			continue
		}
		for _, iv := range r.Intervals {
			if iv.End == 0 {
				iv.End = rec.End
			}
			out = append(out, claim{run: r, Interval: iv})
		}
	}
	slices.SortFunc(out, func(a, b claim) int { return cmpInt(a.Start, b.Start) })
	return out
}

// gapClaims returns the claims of a run whose history has gaps. Its
// history is trusted outside the gaps only: an interval open when a gap
// began is cut at the gap's start, and one open at its end starts there.
// Inside a gap, what the run's client saw stands in for the lost entries:
// a sidecar answers GET /leader with 200 only while it claims, and a term
// is one continuous claim, so the run claimed token T throughout [the end
// of its first poll answered with T, the start of its last one] — a lower
// bound of the real claim. Pieces of one term (same token) are then joined.
func gapClaims(rec *Record, r *Run) []claim {
	end := r.Exited
	if end == 0 {
		end = rec.End
	}
	inGap := func(t int64) bool {
		for _, g := range r.Gaps {
			to := g.To
			if to == 0 {
				to = end
			}
			if t > g.From && t < to {
				return true
			}
		}
		return false
	}
	var pieces []history.Interval
	// From the history: every interval, clipped to outside the gaps. An
	// interval that spans a gap becomes its part before and its part after
	// (entries inside a gap do not exist, by the gap's definition).
	var cur *history.Interval
	closeAt := func(t int64) {
		if cur != nil {
			cur.End = t
			pieces = append(pieces, *cur)
			cur = nil
		}
	}
	for _, e := range r.History {
		for _, g := range r.Gaps {
			if g.To != 0 && e.Mono == g.To && cur != nil {
				// The state before this entry is unknown back to g.From.
				closeAt(g.From)
			}
		}
		switch {
		case e.IsLeader && cur == nil:
			cur = &history.Interval{Identity: e.Identity, Token: e.Token, Start: e.Mono}
		case e.IsLeader && cur.Token != e.Token:
			closeAt(e.Mono)
			cur = &history.Interval{Identity: e.Identity, Token: e.Token, Start: e.Mono}
		case !e.IsLeader && cur != nil:
			closeAt(e.Mono)
		}
	}
	if cur != nil {
		stop := end
		for _, g := range r.Gaps {
			if g.To == 0 && g.From >= cur.Start {
				stop = g.From
			}
		}
		closeAt(stop)
	}
	// From the polls inside the gaps.
	start := int64(0)
	if len(r.History) > 0 {
		start = r.History[0].Mono
	}
	overlapsGap := func(lo, hi int64) bool {
		for _, g := range r.Gaps {
			to := g.To
			if to == 0 {
				to = end
			}
			if hi > g.From && lo < to {
				return true
			}
		}
		return false
	}
	for _, w := range rec.Writes {
		// A poll partly in a gap counts too: the run claimed at some
		// instant of it, so its term lasted at least to its start.
		if w.Writer != r.Identity || w.PollStart < start || w.PollEnd > end || !overlapsGap(w.PollStart, w.PollEnd) {
			continue
		}
		p := history.Interval{Identity: r.Identity, Token: w.Token, Start: w.PollEnd, End: max(w.PollEnd, w.PollStart)}
		pieces = append(pieces, p)
	}
	// One claim per token: a term is one continuous claim.
	byToken := map[int64]*history.Interval{}
	var order []int64
	for _, p := range pieces {
		if q, ok := byToken[p.Token]; ok {
			q.Start, q.End = min(q.Start, p.Start), max(q.End, p.End)
			continue
		}
		byToken[p.Token] = &p
		order = append(order, p.Token)
	}
	var out []claim
	for _, t := range order {
		iv := byToken[t]
		out = append(out, claim{run: r, Interval: *iv, observed: inGap(iv.Start) || inGap(iv.End)})
	}
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Check runs the four checks over rec.
//
// The paused span. A process stopped by SIGSTOP cannot act, answer or
// record anything, so its history shows it leading from before the pause
// until it records its step-down after SIGCONT, while a successor may have
// won in between. Nobody can observe the frozen process, and the histories
// do not say when its validity deadline passed inside the pause (that
// depends on when it last sent a renewal), so check 1 cannot decide whether
// the successor won after that deadline; the blackhole and delay faults,
// where the old leader keeps running and records its own step-down, test
// that property exactly. An overlap with a frozen claim is therefore
// counted as a stale wake, not a violation, when all of these hold: the
// successor won while the process was stopped (never before the pause), the
// process recorded its step-down within WakeGrace of being continued, and
// it never answered GET /leader with that term's token after it was
// continued (checkWakes). Anything else is a violation. The data in that
// span is protected only by the fencing token, which check 3 exercises:
// the client of a paused sidecar holds a write it decided on before the
// pause and sends it on wake.
func Check(rec *Record) Result {
	var res Result
	cs := claims(rec)
	checkOverlaps(rec, cs, &res)
	checkWakes(rec, cs, &res)
	checkTokens(rec, cs, &res)
	checkRegister(rec, cs, &res)
	checkOps(rec, cs, &res)
	checkGate(rec, &res)
	for _, r := range rec.Races {
		res.Races++
		res.violate("data race reported by the race detector in %s (see its log)", r)
	}
	terms := map[string]bool{}
	for _, c := range cs {
		terms[fmt.Sprintf("%s/%d", c.run.Identity, c.Token)] = true
	}
	res.Terms = len(terms)
	checkLiveness(rec, &res)
	return res
}

// checkLiveness: every round ends with one agreed leader within its bound
// of the heal, every handover with a new agreed term, and every
// fail-history target that led reported its history as degraded.
func checkLiveness(rec *Record, res *Result) {
	for i, r := range rec.Rounds {
		res.Settled = append(res.Settled, r.Settled)
		switch {
		case r.Settled < 0:
			res.SettleViolations++
			res.violate("liveness: round %d: no single agreed leader after the faults healed", i)
		case r.Settled > r.SettleBound:
			res.SettleViolations++
			res.violate("liveness: round %d: one agreed leader only %v after the faults healed, bound %v", i, r.Settled, r.SettleBound)
		}
		for j, h := range r.Handovers {
			res.Handovers = append(res.Handovers, h.Took)
			if h.Took < 0 {
				res.SettleViolations++
				res.violate("liveness: round %d handover %d (%s of %s): no new agreed term", i, j, h.Kind, h.From)
			}
		}
		for run, ok := range r.Degraded {
			if !ok {
				res.NotDegraded++
				res.violate("fail-history: round %d: %s stepped down with its history failing, but /status did not report the history as degraded", i, run)
			}
		}
	}
}

func checkOverlaps(rec *Record, cs []claim, res *Result) {
	for i, x := range cs {
		for _, y := range cs[i+1:] {
			if x.run == y.run {
				continue
			}
			lo, hi := max(x.Start, y.Start), min(x.End, y.End)
			if lo >= hi {
				continue
			}
			if staleWake(rec, x, y) || staleWake(rec, y, x) {
				res.StaleWakes++
				continue
			}
			res.Overlaps++
			res.violate("overlap: %v and %v both claimed leadership for %v", x, y, time.Duration(hi-lo))
		}
	}
}

// staleWake reports whether old's overlap with successor is explained by a
// pause of old that outlasted its validity (see Check).
func staleWake(rec *Record, old, successor claim) bool {
	for _, p := range rec.Pauses {
		if p.Run != old.run.Name() || p.Stop < old.Start || p.Stop > old.End {
			continue
		}
		if successor.Start >= p.Stop && successor.Start <= p.Cont && old.End <= p.Cont+int64(rec.WakeGrace) {
			return true
		}
	}
	return false
}

// checkWakes: a process whose deadline surely passed while it was paused
// (the pause outlasted its validity, or a successor won meanwhile, which a
// correct backend allows only after the lease, which outlives the deadline,
// expired) must record its step-down promptly once continued, and must not
// answer as leader of that term again.
func checkWakes(rec *Record, cs []claim, res *Result) {
	for _, p := range rec.Pauses {
		for _, c := range cs {
			if c.run.Name() != p.Run || p.Stop < c.Start || p.Stop > c.End {
				continue
			}
			stale := p.Cont-p.Stop >= int64(rec.Validity)
			for _, o := range cs {
				if o.run != c.run && o.Start >= p.Stop && o.Start <= p.Cont {
					stale = true
				}
			}
			if !stale {
				continue
			}
			if c.End > p.Cont+int64(rec.WakeGrace) {
				res.violate("stale wake: %v was paused for %v past its deadline and recorded its step-down %v after it was continued (grace %v)",
					c, time.Duration(p.Cont-p.Stop), time.Duration(c.End-p.Cont), rec.WakeGrace)
			}
			for _, w := range rec.Writes {
				if w.Writer == c.run.Identity && w.Token == c.Token && w.PollStart >= p.Cont {
					res.violate("stale wake: %v answered GET /leader at %d, after it was continued past its deadline", c, w.PollEnd)
					break
				}
			}
		}
	}
}

func checkTokens(rec *Record, cs []claim, res *Result) {
	for i := 1; i < len(cs); i++ {
		prev, cur := cs[i-1], cs[i]
		if cur.Token > prev.Token {
			continue
		}
		if knownRegression(rec, prev, cur) {
			res.KnownRegressions++
			continue
		}
		res.TokenViolations++
		res.violate("token: %v began after %v with a token not above it", cur, prev)
	}
}

// knownRegression: on Redis without persistence a server restarted empty
// forgets the counter; a token can go back when the winner never saw the
// higher one (the documented limit of pkg/election/redis).
func knownRegression(rec *Record, prev, cur claim) bool {
	if rec.Backend == "etcd" {
		return false
	}
	restarted := false
	for _, t := range rec.RedisEmpty {
		if t > prev.Start && t < cur.Start {
			restarted = true
		}
	}
	if !restarted {
		return false
	}
	for _, e := range cur.run.History {
		if e.Mono < cur.Start && e.Token >= prev.Token {
			return false
		}
	}
	return true
}

// checkRegister: every accepted write carries a token its writer held when
// it answered the poll, and that term was still the latest to have begun
// when the register accepted the write.
func checkRegister(rec *Record, cs []claim, res *Result) {
	for _, w := range rec.Writes {
		if !w.Accepted {
			res.Rejected++
			continue
		}
		res.Accepted++
		own := -1
		for i, c := range cs {
			if c.run.Identity == w.Writer && c.Token == w.Token && c.Start <= w.PollEnd && c.End >= w.PollStart {
				own = i
				break
			}
		}
		if own < 0 {
			res.Unowned++
			res.violate("register: accepted a write by %s with token %d at %d, but %s held no such term when it answered (poll [%d, %d])",
				w.Writer, w.Token, w.At, w.Writer, w.PollStart, w.PollEnd)
			continue
		}
		for _, c := range cs[own+1:] {
			if c.Start > w.At {
				break
			}
			if c.Token == w.Token {
				continue
			}
			if c.Token < w.Token && knownRegression(rec, cs[own], c) {
				continue
			}
			res.StaleAccepted++
			res.violate("register: accepted a stale write by %s with token %d at %d, after %v had begun", w.Writer, w.Token, w.At, c)
			break
		}
	}
}
