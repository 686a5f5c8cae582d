// Package history writes every status change of a candidate as one JSON
// line, stamped with CLOCK_MONOTONIC, so the leadership intervals of several
// processes on one machine can be checked for overlap.
package history

import (
	"encoding/json"
	"io"
	"time"

	"github.com/leader-elector/leader-elector/internal/lossy"
	"github.com/leader-elector/leader-elector/pkg/election"
)

// Entry is one line of a history.
type Entry struct {
	Mono     int64     `json:"mono_ns"`
	Time     time.Time `json:"time"`
	Identity string    `json:"identity"`
	IsLeader bool      `json:"is_leader"`
	Leader   string    `json:"leader"`
	Token    int64     `json:"fencing_token"`
	Ready    bool      `json:"ready"`
}

// Writer appends entries to a destination without ever blocking the
// caller: the election calls Record from its status path, and a history on a
// stalled pipe or a full disk must not delay a step-down. Each entry is
// encoded at once (so it carries the status's own CLOCK_MONOTONIC stamp) and
// written by the Writer's own goroutine; when the destination cannot keep up
// entries are dropped and counted, and write errors are counted and kept, so
// the history can be reported as degraded (Stats) rather than silently
// stopping. It is safe for concurrent use.
type Writer struct {
	out *lossy.Writer
}

// NewWriter returns a Writer appending to w. Close it to stop its goroutine.
func NewWriter(w io.Writer) *Writer { return &Writer{out: lossy.New(w, lossy.DefaultQueue)} }

// Record queues s for writing and returns at once. It is meant for
// election.Config.OnStatus.
func (w *Writer) Record(s election.Status) {
	line, err := json.Marshal(Entry{
		Mono: s.Mono, Time: s.Changed.UTC(), Identity: s.Identity, IsLeader: s.IsLeader,
		Leader: s.Leader, Token: s.FencingToken, Ready: s.Ready,
	})
	if err != nil {
		return // an Entry always encodes
	}
	_, _ = w.out.Write(append(line, '\n'))
}

// Stats reports how many entries were written, dropped and failed, and the
// last write error.
func (w *Writer) Stats() lossy.Stats { return w.out.Stats() }

// Err returns the destination's last write error, or nil.
func (w *Writer) Err() error { return w.out.Stats().LastErr }

// Close stops accepting entries and waits up to timeout for the queued ones
// to be written; lossy.ErrStuck means the destination did not take them.
func (w *Writer) Close(timeout time.Duration) error { return w.out.Close(timeout) }

// Read decodes a history written by a Writer.
func Read(r io.Reader) ([]Entry, error) {
	var out []Entry
	dec := json.NewDecoder(r)
	for {
		var e Entry
		if err := dec.Decode(&e); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

// Interval is a span during which a candidate claimed leadership.
type Interval struct {
	Identity   string
	Token      int64
	Start, End int64 // CLOCK_MONOTONIC ns; End is 0 while still leading
}

// Intervals turns one candidate's history into its leadership intervals.
func Intervals(h []Entry) []Interval {
	var out []Interval
	var cur *Interval
	for _, e := range h {
		switch {
		case e.IsLeader && cur == nil:
			cur = &Interval{Identity: e.Identity, Token: e.Token, Start: e.Mono}
		case !e.IsLeader && cur != nil:
			cur.End = e.Mono
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}
