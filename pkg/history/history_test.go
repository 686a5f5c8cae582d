package history

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/pkg/election"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
	if err := w.Close(10 * time.Second); err != nil {
		t.Fatal(err)
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

// flakyDisk fails while full is set, like a volume that fills and is freed.
type flakyDisk struct {
	mu   sync.Mutex
	full bool
	n    int
	buf  bytes.Buffer
}

func (d *flakyDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	if d.full {
		return 0, errors.New("no space left on device")
	}
	return d.buf.Write(p)
}

func (d *flakyDisk) setFull(full bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.full = full
}

// A full disk used to stop the audit silently after the first failed write.
// Every failure is now counted and kept, and writing goes on when the disk
// has room again.
func TestWriteErrorsAreCountedAndWritingGoesOn(t *testing.T) {
	d := &flakyDisk{full: true}
	w := NewWriter(d)
	w.Record(election.Status{Mono: 1})
	w.Record(election.Status{Mono: 2})
	waitFor(t, func() bool { return w.Stats().Failed == 2 })
	if w.Err() == nil || !w.Stats().Degraded() {
		t.Fatalf("stats %+v: want the failures reported", w.Stats())
	}
	d.setFull(false)
	w.Record(election.Status{Mono: 3})
	if err := w.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	h, err := Read(&d.buf)
	if err != nil || len(h) != 1 || h[0].Mono != 3 {
		t.Fatalf("after the disk freed: %+v, %v", h, err)
	}
	if s := w.Stats(); s.Failed != 2 || s.Written != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A history on a pipe that stopped draining used to block the status path
// (and so /status, /leader and /readyz). Record never waits.
func TestRecordDoesNotBlockOnAStalledPipe(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	w := NewWriter(pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100_000 { // far more than a pipe buffer and the queue hold
			w.Record(election.Status{Mono: int64(i), Identity: "a"})
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Record blocked on a stalled pipe")
	}
	if s := w.Stats(); s.Dropped == 0 {
		t.Fatalf("stats %+v: want dropped entries counted", s)
	}
	_ = r.Close()
	if err := w.Close(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	if _, err := Read(bytes.NewBufferString(`{"mono_ns":1}` + "\nnot json\n")); err == nil {
		t.Fatal("no error for a corrupt history")
	}
}
