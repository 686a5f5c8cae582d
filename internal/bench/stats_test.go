package bench

import (
	"testing"
	"time"
)

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestPercentileNearestRank(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		exp    time.Duration
	}{
		{"single sample is every percentile", ms(7), 99, 7 * time.Millisecond},
		{"median of odd count", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"median of even count is the lower middle", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", hundred, 99, 99 * time.Millisecond},
		{"p50 of 100 is the 50th", hundred, 50, 50 * time.Millisecond},
		{"p99 of fewer than 100 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p0 is the min", ms(3, 4, 5), 0, 3 * time.Millisecond},
		{"p100 is the max", ms(3, 4, 5), 100, 5 * time.Millisecond},
		{"p above 100 is clamped", ms(3, 4, 5), 150, 5 * time.Millisecond},
		{"empty is zero", nil, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.exp {
				t.Errorf("exp %v, got %v", tt.exp, got)
			}
		})
	}
}

func TestSummarizeDoesNotReorderInput(t *testing.T) {
	in := ms(5, 1, 4, 2, 3)
	s, err := Summarize(in)
	if err != nil {
		t.Fatal(err)
	}
	exp := Summary{N: 5, Min: time.Millisecond, P50: 3 * time.Millisecond, P99: 5 * time.Millisecond,
		Max: 5 * time.Millisecond, Mean: 3 * time.Millisecond}
	if s != exp {
		t.Errorf("exp %+v, got %+v", exp, s)
	}
	if in[0] != 5*time.Millisecond {
		t.Errorf("input was reordered: %v", in)
	}
}

func TestSummarizeRejectsNoSamples(t *testing.T) {
	if _, err := Summarize(nil); err == nil {
		t.Fatal("exp an error for no samples, got nil")
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d   time.Duration
		exp string
	}{
		{0, "0"},
		{850 * time.Microsecond, "850µs"},
		{4210 * time.Microsecond, "4.21ms"},
		{42100 * time.Microsecond, "42.1ms"},
		{1234 * time.Millisecond, "1.23s"},
		{-120 * time.Millisecond, "−120ms"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.d); got != tt.exp {
			t.Errorf("FormatDuration(%v): exp %q, got %q", tt.d, tt.exp, got)
		}
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b time.Duration
		exp  string
	}{
		{2 * time.Second, 4 * time.Millisecond, "500×"},
		{30 * time.Millisecond, 2 * time.Millisecond, "15.0×"},
		{3 * time.Millisecond, 2 * time.Millisecond, "1.50×"},
		{time.Second, 0, "–"},
	}
	for _, tt := range tests {
		if got := Ratio(tt.a, tt.b); got != tt.exp {
			t.Errorf("Ratio(%v, %v): exp %q, got %q", tt.a, tt.b, tt.exp, got)
		}
	}
}
