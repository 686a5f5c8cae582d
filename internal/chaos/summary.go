package chaos

import (
	"fmt"
	"io"
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
}

// NewSummary returns an empty summary.
func NewSummary() *Summary {
	return &Summary{Backends: map[string]int{}, Faults: map[Kind]int{}}
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
}

// percentile returns the p-th percentile (nearest rank) of the times to an
// agreed leader after the heal.
func (s *Summary) percentile(p float64) time.Duration {
	if len(s.settled) == 0 {
		return 0
	}
	d := slices.Clone(s.settled)
	slices.Sort(d)
	i := int(p*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

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
	if len(s.FailedSeeds) > 0 {
		row("failed seeds", fmt.Sprint(s.FailedSeeds))
	}
	return tw.Flush()
}
