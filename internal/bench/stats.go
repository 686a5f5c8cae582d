package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary describes a set of latency samples.
type Summary struct {
	N    int
	Min  time.Duration
	P50  time.Duration
	P99  time.Duration
	Max  time.Duration
	Mean time.Duration
}

// Summarize sorts a copy of samples and returns their summary. It returns an
// error when there are no samples, which means the measurement is broken.
func Summarize(samples []time.Duration) (Summary, error) {
	if len(samples) == 0 {
		return Summary{}, fmt.Errorf("bench: no samples")
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum float64
	for _, d := range s {
		sum += float64(d)
	}
	return Summary{
		N:    len(s),
		Min:  s[0],
		P50:  Percentile(s, 50),
		P99:  Percentile(s, 99),
		Max:  s[len(s)-1],
		Mean: time.Duration(sum / float64(len(s))),
	}, nil
}

// Percentile returns the p-th percentile of sorted samples by the
// nearest-rank method: the smallest sample such that at least p% of the
// samples are at or below it. It always returns one of the samples, so a p99
// of fewer than 100 samples is their maximum. sorted must be non-empty and in
// ascending order; p is clamped to [0, 100].
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	p = min(max(p, 0), 100)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// Ratio returns a/b as "12.3×", or "–" when b is not positive.
func Ratio(a, b time.Duration) string {
	if b <= 0 {
		return "–"
	}
	r := float64(a) / float64(b)
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f×", r)
	case r >= 10:
		return fmt.Sprintf("%.1f×", r)
	default:
		return fmt.Sprintf("%.2f×", r)
	}
}

// FormatDuration prints d with three significant digits in a unit that
// suits it: 850µs, 4.21ms, 1.23s.
func FormatDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d == 0:
		s = "0"
	case d < time.Millisecond:
		s = sig3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		s = sig3(float64(d)/float64(time.Millisecond)) + "ms"
	default:
		s = sig3(float64(d)/float64(time.Second)) + "s"
	}
	if neg {
		s = "−" + s
	}
	return s
}

// sig3 prints v (≥ 1 or 0 < v < 1000) with three significant digits.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
