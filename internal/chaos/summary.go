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
	Backends         map[string]int
	Faults           map[Kind]int
	Combined         int // trials with two faults
	Overlaps         int
	StaleWakes       int
	TokenViolations  int
	KnownRegressions int
	Accepted         int
	Rejected         int
	StaleAccepted    int
	SettleViolations int
	Races            int
	settled          []time.Duration
	FailedSeeds      []int64

	// RolloutChanges lists, per backend, the leadership changes of each
	// rollout that was its trial's only fault; RolloutChangesAll of every
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
	return &Summary{Backends: map[string]int{}, Faults: map[Kind]int{},
		RolloutChanges: map[string][]int{}, RolloutChangesAll: map[string][]int{}, RestartToLeader: map[string][]time.Duration{}}
}

// Add counts one trial.
func (s *Summary) Add(o Outcome) {
	s.Trials++
	s.Backends[o.Plan.Backend]++
	for _, f := range o.Plan.Faults {
		s.Faults[f.Kind]++
	}
	if len(o.Plan.Faults) > 1 {
		s.Combined++
	}
	r := o.Result
	if !r.Passed() {
		s.Failed++
		s.FailedSeeds = append(s.FailedSeeds, o.Plan.Seed)
	}
	s.Overlaps += r.Overlaps
	s.StaleWakes += r.StaleWakes
	s.TokenViolations += r.TokenViolations
	s.KnownRegressions += r.KnownRegressions
	s.Accepted += r.Accepted
	s.Rejected += r.Rejected
	s.StaleAccepted += r.StaleAccepted
	s.Races += r.Races
	if r.SettleViolation {
		s.SettleViolations++
	}
	if r.Settled >= 0 {
		s.settled = append(s.settled, r.Settled)
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

// nearestRank returns the p-th percentile (nearest rank) of d.
func nearestRank(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	i := int(p*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
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

// percentile returns the p-th percentile (nearest rank) of the times to an
// agreed leader after the heal.
func (s *Summary) percentile(p float64) time.Duration { return nearestRank(s.settled, p) }

// Write prints the summary as a table.
func (s *Summary) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	var backends []string
	for _, b := range Backends() {
		backends = append(backends, fmt.Sprintf("%s %d", b, s.Backends[b]))
	}
	row("trials", fmt.Sprintf("%d (%s; %d with two faults)", s.Trials, strings.Join(backends, ", "), s.Combined))
	row("failed trials", s.Failed)
	for _, k := range Kinds() {
		row("  fault "+string(k), s.Faults[k])
	}
	row("overlapping leaders", s.Overlaps)
	row("stale wakes (paused past deadline, expected)", s.StaleWakes)
	row("token violations", s.TokenViolations)
	row("token regressions, Redis restarted empty (documented)", s.KnownRegressions)
	row("register writes accepted", s.Accepted)
	row("stale writes rejected by the fence", s.Rejected)
	row("stale writes accepted", s.StaleAccepted)
	row("liveness violations after heal", s.SettleViolations)
	row("sidecar processes reporting a data race", s.Races)
	row("time to one leader after heal, p99", s.percentile(0.99).Round(time.Millisecond))
	row("time to one leader after heal, max", s.percentile(1).Round(time.Millisecond))
	for _, b := range Backends() {
		if n := len(s.RolloutChangesAll[b]); n > 0 {
			row("leadership changes per rollout, "+b, fmt.Sprintf("alone: %s; all %d: %s",
				histogram(s.RolloutChanges[b]), n, histogram(s.RolloutChangesAll[b])))
		}
	}
	for _, b := range Backends() {
		if d := s.RestartToLeader[b]; len(d) > 0 {
			row("leader's sidecar restarted → next claim, "+b, fmt.Sprintf("%d: p50 %v, max %v",
				len(d), nearestRank(d, 0.5).Round(time.Millisecond), nearestRank(d, 1).Round(time.Millisecond)))
		}
	}
	row("gate trials / pods with the gate True at once", fmt.Sprintf("%d / %d", s.GateTrials, s.GateOverlaps))
	if len(s.GateHandover) > 0 {
		row("gate fault → successor's gate True", fmt.Sprintf("p50 %v, max %v",
			nearestRank(s.GateHandover, 0.5).Round(time.Millisecond), nearestRank(s.GateHandover, 1).Round(time.Millisecond)))
	}
	if len(s.FailedSeeds) > 0 {
		row("failed seeds", fmt.Sprint(s.FailedSeeds))
	}
	return tw.Flush()
}
