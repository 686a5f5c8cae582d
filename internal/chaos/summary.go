package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary aggregates the outcomes of many trials.
type Summary struct {
	Trials, Failed   int
	Rounds           int
	Terms            int // distinct (identity, token) claims, summed over trials
	Backends         map[string]int
	Faults           map[Kind]int
	Handovers        map[Handover]int
	Combined         int // rounds with two faults
	Overlaps         int
	StaleWakes       int
	TokenViolations  int
	KnownRegressions int
	Accepted         int
	Rejected         int
	StaleAccepted    int
	Unowned          int
	SettleViolations int
	NotDegraded      int
	Races            int
	settled          []time.Duration
	handovers        []time.Duration
	FailedSeeds      []int64

	// RolloutChanges lists, per backend, the leadership changes of each
	// rollout that was its round's only fault; RolloutChangesAll of every
	// rollout.
	RolloutChanges, RolloutChangesAll map[string][]int
	// RestartToLeader lists, per backend, the time from a sidecar-restart's
	// SIGKILL of the leader to the next claim.
	RestartToLeader map[string][]time.Duration
	GateTrials      int
	GateOverlaps    int
	GateHandover    []time.Duration
}

// NewSummary returns an empty summary.
func NewSummary() *Summary {
	return &Summary{Backends: map[string]int{}, Faults: map[Kind]int{}, Handovers: map[Handover]int{},
		RolloutChanges: map[string][]int{}, RolloutChangesAll: map[string][]int{}, RestartToLeader: map[string][]time.Duration{}}
}

// Add counts one trial.
func (s *Summary) Add(o Outcome) {
	s.Trials++
	s.Backends[o.Plan.Backend]++
	for _, r := range o.Plan.Rounds {
		if len(r.Faults) > 1 {
			s.Combined++
		}
	}
	// What ran, not what was planned: a trial stops early when a round
	// found no leader.
	if o.Record != nil {
		for i, rr := range o.Record.Rounds {
			s.Rounds++
			if i < len(o.Plan.Rounds) {
				for _, f := range o.Plan.Rounds[i].Faults {
					s.Faults[f.Kind]++
				}
			}
			for _, h := range rr.Handovers {
				s.Handovers[h.Kind]++
			}
		}
	}
	r := o.Result
	if !r.Passed() {
		s.Failed++
		s.FailedSeeds = append(s.FailedSeeds, o.Plan.Seed)
	}
	s.Terms += r.Terms
	s.Overlaps += r.Overlaps
	s.StaleWakes += r.StaleWakes
	s.TokenViolations += r.TokenViolations
	s.KnownRegressions += r.KnownRegressions
	s.Accepted += r.Accepted
	s.Rejected += r.Rejected
	s.StaleAccepted += r.StaleAccepted
	s.Unowned += r.Unowned
	s.Races += r.Races
	s.SettleViolations += r.SettleViolations
	s.NotDegraded += r.NotDegraded
	for _, d := range r.Settled {
		if d >= 0 {
			s.settled = append(s.settled, d)
		}
	}
	for _, d := range r.Handovers {
		if d >= 0 {
			s.handovers = append(s.handovers, d)
		}
	}
	b := o.Plan.Backend
	for _, ro := range r.Rollouts {
		s.RolloutChangesAll[b] = append(s.RolloutChangesAll[b], ro.Changes)
		if ro.Alone {
			s.RolloutChanges[b] = append(s.RolloutChanges[b], ro.Changes)
		}
	}
	s.RestartToLeader[b] = append(s.RestartToLeader[b], r.RestartToLeader...)
	if o.Plan.Gate() {
		s.GateTrials++
	}
	s.GateOverlaps += r.GateOverlaps
	s.GateHandover = append(s.GateHandover, r.GateHandover...)
}

// histogram prints counts as "1×4, 2×1" (value×times), or "none".
func histogram(counts []int) string {
	if len(counts) == 0 {
		return "none"
	}
	by := map[int]int{}
	for _, c := range counts {
		by[c]++
	}
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(by)) {
		parts = append(parts, fmt.Sprintf("%d×%d", v, by[v]))
	}
	return strings.Join(parts, ", ")
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	d := slices.Clone(ds)
	slices.Sort(d)
	i := int(p*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

// SettledPercentile returns the p-th percentile of the rounds' times to one
// agreed leader after the heal.
func (s *Summary) SettledPercentile(p float64) time.Duration { return percentile(s.settled, p) }

func pct(ds []time.Duration) string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%v / %v / %v", r(percentile(ds, 0.5)), r(percentile(ds, 0.99)), r(percentile(ds, 1)))
}

// Write prints the summary as a table.
func (s *Summary) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	var backends []string
	for _, b := range Backends() {
		backends = append(backends, fmt.Sprintf("%s %d", b, s.Backends[b]))
	}
	row("trials", fmt.Sprintf("%d (%s)", s.Trials, strings.Join(backends, ", ")))
	row("failed trials", s.Failed)
	row("terms (distinct identity and token claimed)", s.Terms)
	row("fault rounds", fmt.Sprintf("%d (%d with two faults)", s.Rounds, s.Combined))
	for _, k := range Kinds() {
		row("  fault "+string(k), s.Faults[k])
	}
	var hs []string
	total := 0
	for _, h := range Handovers() {
		hs = append(hs, fmt.Sprintf("%s %d", h, s.Handovers[h]))
		total += s.Handovers[h]
	}
	row("handovers", fmt.Sprintf("%d (%s)", total, strings.Join(hs, ", ")))
	row("overlapping leaders", s.Overlaps)
	row("stale wakes (paused past deadline, expected)", s.StaleWakes)
	row("token violations", s.TokenViolations)
	row("token regressions, Redis restarted empty (documented)", s.KnownRegressions)
	row("register writes accepted", s.Accepted)
	row("stale writes rejected by the fence", s.Rejected)
	row("stale writes accepted", s.StaleAccepted)
	row("accepted writes whose writer held no such term", s.Unowned)
	row("liveness violations (rounds and handovers)", s.SettleViolations)
	row("failing history not reported degraded", s.NotDegraded)
	row("sidecar processes reporting a data race", s.Races)
	row("time to one leader after heal, p50 / p99 / max", pct(s.settled))
	row("time to the next term after a handover, p50 / p99 / max", pct(s.handovers))
	for _, b := range Backends() {
		if n := len(s.RolloutChangesAll[b]); n > 0 {
			row("leadership changes per rollout, "+b, fmt.Sprintf("alone in its round: %s; all %d: %s",
				histogram(s.RolloutChanges[b]), n, histogram(s.RolloutChangesAll[b])))
		}
	}
	for _, b := range Backends() {
		if d := s.RestartToLeader[b]; len(d) > 0 {
			row("leader's sidecar restarted → next claim, "+b+", p50 / p99 / max", fmt.Sprintf("%s (%d)", pct(d), len(d)))
		}
	}
	row("gate trials / pods with the gate True at once", fmt.Sprintf("%d / %d", s.GateTrials, s.GateOverlaps))
	if len(s.GateHandover) > 0 {
		row("gate fault → successor's gate True, p50 / p99 / max", pct(s.GateHandover))
	}
	if len(s.FailedSeeds) > 0 {
		row("failed seeds", fmt.Sprint(s.FailedSeeds))
	}
	return tw.Flush()
}
