package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// ChartRow is one system in the chart.
type ChartRow struct {
	Label string
	Note  string // second line under the label, e.g. "200 trials"
	P50   time.Duration
	P99   time.Duration
	Max   time.Duration
}

// Chart is a horizontal bar chart of latency percentiles on a logarithmic
// axis, so that milliseconds and seconds fit on one picture.
type Chart struct {
	Title    string
	Subtitle string
	Rows     []ChartRow
}

// Layout of the picture, in SVG user units.
const (
	chartWidth  = 860
	labelWidth  = 230
	plotRight   = 40
	rowHeight   = 46
	headHeight  = 64
	axisHeight  = 44
	legendSpace = 30
	barHeight   = 13
)

// logAxis maps durations to x positions on a log10 scale between two whole
// decades.
type logAxis struct {
	lo, hi   float64 // log10 of the bounds, in seconds
	x0, x1   float64 // pixel range
	minValue time.Duration
}

// newLogAxis returns an axis spanning the whole decades around [lo, hi].
// Non-positive values are ignored; with no positive value it spans 1 ms–1 s.
func newLogAxis(values []time.Duration, x0, x1 float64) logAxis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if v <= 0 {
			continue
		}
		l := math.Log10(v.Seconds())
		lo, hi = math.Min(lo, l), math.Max(hi, l)
	}
	if math.IsInf(lo, 1) {
		lo, hi = -3, 0
	}
	lo, hi = math.Floor(lo), math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	return logAxis{lo: lo, hi: hi, x0: x0, x1: x1, minValue: time.Duration(math.Pow(10, lo) * float64(time.Second))}
}

// x returns the position of d; values below the axis sit at its start.
func (a logAxis) x(d time.Duration) float64 {
	if d < a.minValue {
		return a.x0
	}
	f := (math.Log10(d.Seconds()) - a.lo) / (a.hi - a.lo)
	return a.x0 + f*(a.x1-a.x0)
}

// ticks returns one tick per decade, lowest first.
func (a logAxis) ticks() []time.Duration {
	var out []time.Duration
	for e := a.lo; e <= a.hi+1e-9; e++ {
		out = append(out, time.Duration(math.Round(math.Pow(10, e)*float64(time.Second))))
	}
	return out
}

// WriteSVG renders the chart as a standalone SVG document.
func (c Chart) WriteSVG(w io.Writer) error {
	var values []time.Duration
	for _, r := range c.Rows {
		values = append(values, r.P50, r.P99, r.Max)
	}
	ax := newLogAxis(values, labelWidth, chartWidth-plotRight)
	height := headHeight + len(c.Rows)*rowHeight + axisHeight + legendSpace
	plotTop, plotBottom := float64(headHeight), float64(headHeight+len(c.Rows)*rowHeight)

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="13">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	fmt.Fprintf(&b, `<text x="16" y="26" font-size="17" font-weight="bold">%s</text>`+"\n", esc(c.Title))
	if c.Subtitle != "" {
		fmt.Fprintf(&b, `<text x="16" y="46" fill="#555555">%s</text>`+"\n", esc(c.Subtitle))
	}
	for _, t := range ax.ticks() {
		x := ax.x(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", x, plotTop, x, plotBottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333333">%s</text>`+"\n",
			x, plotBottom+18, esc(FormatDuration(t)))
	}
	for i, r := range c.Rows {
		y := plotTop + float64(i*rowHeight)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" font-weight="bold">%s</text>`+"\n", labelWidth-10, y+20, esc(r.Label))
		if r.Note != "" {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#666666" font-size="11">%s</text>`+"\n", labelWidth-10, y+35, esc(r.Note))
		}
		bar := func(d time.Duration, dy float64, fill, what string) {
			w := math.Max(ax.x(d)-ax.x0, 1)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"><title>%s %s</title></rect>`+"\n",
				ax.x0, y+dy, w, barHeight, fill, what, esc(FormatDuration(d)))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" fill="#333333">%s</text>`+"\n",
				ax.x0+w+4, y+dy+barHeight-2, esc(FormatDuration(d)))
		}
		bar(r.P50, 8, "#2b6cb0", "p50")
		bar(r.P99, 8+barHeight+2, "#90cdf4", "p99")
		if r.Max > 0 {
			x := ax.x(r.Max)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c53030" stroke-width="2"><title>max %s</title></line>`+"\n",
				x, y+6, x, y+10+2*barHeight, esc(FormatDuration(r.Max)))
		}
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333333"/>`+"\n", ax.x0, plotBottom, ax.x1, plotBottom)
	ly := plotBottom + float64(axisHeight)
	legend := []struct{ fill, text string }{{"#2b6cb0", "p50"}, {"#90cdf4", "p99"}, {"#c53030", "max (line)"}}
	for i, l := range legend {
		x := labelWidth + i*110
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="14" height="10" fill="%s"/><text x="%d" y="%.1f">%s</text>`+"\n",
			x, ly-9, l.fill, x+20, ly, esc(l.text))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#666666" font-size="11">log scale</text>`+"\n", chartWidth-plotRight, ly)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return html.EscapeString(s) }
