package bench

import (
	"encoding/xml"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLogAxisSpansWholeDecades(t *testing.T) {
	ax := newLogAxis([]time.Duration{3 * time.Millisecond, 1700 * time.Millisecond, 0}, 100, 400)
	exp := []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second, 10 * time.Second}
	if got := ax.ticks(); !slices.Equal(got, exp) {
		t.Fatalf("ticks: exp %v, got %v", exp, got)
	}
	if got := ax.x(time.Millisecond); got != 100 {
		t.Errorf("x(1ms): exp 100, got %v", got)
	}
	if got := ax.x(10 * time.Second); math.Abs(got-400) > 1e-9 {
		t.Errorf("x(10s): exp 400, got %v", got)
	}
	if got := ax.x(100 * time.Millisecond); math.Abs(got-250) > 1e-9 {
		t.Errorf("x(100ms): exp 250 (middle of four decades), got %v", got)
	}
	if got := ax.x(time.Microsecond); got != 100 {
		t.Errorf("a value below the axis: exp its start 100, got %v", got)
	}
}

func TestLogAxisWithoutPositiveValues(t *testing.T) {
	ax := newLogAxis(nil, 0, 300)
	exp := []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second}
	if got := ax.ticks(); !slices.Equal(got, exp) {
		t.Fatalf("exp %v, got %v", exp, got)
	}
}

func TestLogAxisSingleValueGetsOneDecade(t *testing.T) {
	ax := newLogAxis([]time.Duration{time.Millisecond}, 0, 100)
	if got := len(ax.ticks()); got != 2 {
		t.Fatalf("exp 2 ticks, got %d", got)
	}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	c := Chart{
		Title:    "Graceful handover <latency>",
		Subtitle: "a & b",
		Rows: []ChartRow{
			{Label: "ours", Note: "200 trials", P50: 2 * time.Millisecond, P99: 5 * time.Millisecond, Max: 9 * time.Millisecond},
			{Label: "client-go", P50: time.Second, P99: 2 * time.Second},
		},
	}
	var b strings.Builder
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	dec := xml.NewDecoder(strings.NewReader(svg))
	var rects, titles int
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "rect":
				rects++
			case "title":
				titles++
			}
		}
	}
	// Background, 2 bars per row, 3 legend swatches.
	if exp := 1 + 2*len(c.Rows) + 3; rects != exp {
		t.Errorf("rects: exp %d, got %d", exp, rects)
	}
	// One per bar plus one per max marker given.
	if exp := 2*len(c.Rows) + 1; titles != exp {
		t.Errorf("titles: exp %d, got %d", exp, titles)
	}
	for _, want := range []string{"Graceful handover &lt;latency&gt;", "a &amp; b", "client-go", "200 trials", "2.00ms", "1.00s"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}
