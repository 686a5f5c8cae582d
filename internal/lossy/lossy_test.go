package lossy_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/leader-elector/leader-elector/internal/lossy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer safe for the writer's goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestWritesArriveInOrder(t *testing.T) {
	var dst syncBuffer
	w := lossy.New(&dst, 0)
	var want bytes.Buffer
	for i := range 100 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		if n, err := w.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if err := w.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := dst.String(); got != want.String() {
		t.Fatalf("destination got %q, want %q", got, want.String())
	}
	if s := w.Stats(); s.Written != 100 || s.Dropped != 0 || s.Failed != 0 || s.Degraded() {
		t.Fatalf("stats %+v", s)
	}
}

// A pipe nobody reads (a stalled log collector) must not block the caller:
// writes past the queue are dropped and counted.
func TestStalledDestinationDoesNotBlock(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	w := lossy.New(pw, 4)
	line := bytes.Repeat([]byte("x"), 64<<10) // fills the pipe's 64 KiB buffer at once
	const writes = 1000
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for range writes {
			_, _ = w.Write(line)
		}
	}()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("writes to a stalled destination blocked the caller")
	}
	s := w.Stats()
	if s.Dropped == 0 || !s.Degraded() {
		t.Fatalf("stats %+v: want dropped writes counted", s)
	}
	if err := w.Close(100 * time.Millisecond); !errors.Is(err, lossy.ErrStuck) {
		t.Fatalf("Close on a stuck destination: %v, want ErrStuck", err)
	}
	// The reader going away unblocks the goroutine, which then ends.
	_ = r.Close()
	if err := w.Close(30 * time.Second); err != nil {
		t.Fatalf("Close after the destination failed: %v", err)
	}
	if s := w.Stats(); s.Failed == 0 || s.LastErr == nil {
		t.Fatalf("stats %+v: want the broken pipe counted", s)
	}
}

type failing struct{ err error }

func (f failing) Write([]byte) (int, error) { return 0, f.err }

func TestDestinationErrorsAreCountedNotSwallowed(t *testing.T) {
	full := errors.New("no space left on device")
	w := lossy.New(failing{full}, 0)
	for range 3 {
		_, _ = w.Write([]byte("entry\n"))
	}
	if err := w.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	s := w.Stats()
	if s.Failed != 3 || !errors.Is(s.LastErr, full) || !s.Degraded() {
		t.Fatalf("stats %+v: want 3 failures with the last error kept", s)
	}
}

func TestWriteAfterCloseIsDropped(t *testing.T) {
	var dst syncBuffer
	w := lossy.New(&dst, 0)
	if err := w.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("late\n")); err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); s.Dropped != 1 {
		t.Fatalf("stats %+v: want the late write dropped", s)
	}
	if dst.String() != "" {
		t.Fatalf("late write reached the destination: %q", dst.String())
	}
}
