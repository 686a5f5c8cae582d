// Package history writes every status change of a candidate as one JSON
// line, stamped with CLOCK_MONOTONIC, so the leadership intervals of several
// processes on one machine can be checked for overlap.
package history

import (
	"encoding/json"
	"io"
	"sync"
	"time"

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

// Writer appends entries to w. It is safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	enc *json.Encoder
	err error
}

// NewWriter returns a Writer appending to w.
func NewWriter(w io.Writer) *Writer { return &Writer{enc: json.NewEncoder(w)} }

// Record appends s. It is meant for election.Config.OnStatus. The first
// write error stops further writes; Err reports it.
func (w *Writer) Record(s election.Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	w.err = w.enc.Encode(Entry{
		Mono: s.Mono, Time: s.Changed.UTC(), Identity: s.Identity, IsLeader: s.IsLeader,
		Leader: s.Leader, Token: s.FencingToken, Ready: s.Ready,
	})
}

// Err returns the first write error, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

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
