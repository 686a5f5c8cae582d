package history

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestRoundTripAndIntervals(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, s := range []election.Status{
		{Identity: "a", Mono: 10, Changed: time.Unix(1, 0)},
		{Identity: "a", Mono: 20, IsLeader: true, Leader: "a", FencingToken: 5},
		{Identity: "a", Mono: 25, IsLeader: true, Leader: "a", FencingToken: 5, Ready: true},
		{Identity: "a", Mono: 30, Leader: "b", FencingToken: 6},
		{Identity: "a", Mono: 40, IsLeader: true, Leader: "a", FencingToken: 7},
	} {
		w.Record(s)
	}
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	h, err := Read(&buf)
	if err != nil || len(h) != 5 {
		t.Fatalf("read %d entries, %v", len(h), err)
	}
	if h[3].Leader != "b" || h[3].Token != 6 || h[3].IsLeader {
		t.Errorf("entry 3: %+v", h[3])
	}
	want := []Interval{{Identity: "a", Token: 5, Start: 20, End: 30}, {Identity: "a", Token: 7, Start: 40}}
	if got := Intervals(h); !slices.Equal(got, want) {
		t.Errorf("intervals %+v, want %+v", got, want)
	}
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("disk full")
}

func TestFirstWriteErrorStopsWriting(t *testing.T) {
	f := &failingWriter{}
	w := NewWriter(f)
	w.Record(election.Status{})
	w.Record(election.Status{})
	if w.Err() == nil || f.n != 1 {
		t.Fatalf("err %v after %d writes", w.Err(), f.n)
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	if _, err := Read(bytes.NewBufferString(`{"mono_ns":1}` + "\nnot json\n")); err == nil {
		t.Fatal("no error for a corrupt history")
	}
}
