// Package lossy provides a writer that never blocks its caller.
//
// The election must step down at its deadline whatever any output is doing: a
// stderr pipe nobody reads, a history file on a stalled volume or a full disk.
// A Writer hands each Write to its own goroutine through a bounded queue and
// returns at once; when the queue is full the write is dropped and counted
// instead of waited for. Write errors of the destination are counted and the
// last one is kept, so callers can report the output as degraded rather than
// silently losing it.
package lossy

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueue is the number of writes a Writer holds while its destination
// is slow. Log records and history lines are a few hundred bytes each, so the
// queue holds at most a few hundred KiB.
const DefaultQueue = 1024

// Stats counts what happened to the writes given to a Writer.
type Stats struct {
	// Written is the number of writes the destination accepted.
	Written uint64
	// Dropped is the number of writes discarded because the queue was full
	// or the Writer was closed.
	Dropped uint64
	// Failed is the number of writes the destination returned an error for.
	Failed uint64
	// LastErr is the destination's most recent write error; nil if none, or
	// if a later write succeeded.
	LastErr error
}

// Degraded reports whether any write was lost, or the last write failed.
func (s Stats) Degraded() bool { return s.Dropped > 0 || s.Failed > 0 }

// Writer is an io.Writer that queues each Write for a goroutine that writes
// it to the destination. Write never blocks and never fails. A Writer must be
// closed to stop its goroutine.
type Writer struct {
	dst   io.Writer
	queue chan []byte

	written, dropped, failed atomic.Uint64
	lastErr                  atomic.Pointer[error]

	mu     sync.RWMutex // guards closed against Write's send
	closed bool
	done   chan struct{} // closed when the goroutine has ended
}

// New starts a Writer that writes to dst, holding at most queue writes
// (DefaultQueue when queue <= 0) while dst is slow.
func New(dst io.Writer, queue int) *Writer {
	if queue <= 0 {
		queue = DefaultQueue
	}
	w := &Writer{dst: dst, queue: make(chan []byte, queue), done: make(chan struct{})}
	go w.drain()
	return w
}

// Write queues a copy of p and returns len(p), nil without waiting for the
// destination. If the queue is full or the Writer is closed, p is dropped
// and counted.
func (w *Writer) Write(p []byte) (int, error) {
	buf := append([]byte(nil), p...)
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return len(p), nil
	}
	select {
	case w.queue <- buf:
	default:
		w.dropped.Add(1)
	}
	return len(p), nil
}

func (w *Writer) drain() {
	defer close(w.done)
	for p := range w.queue {
		if _, err := w.dst.Write(p); err != nil {
			w.failed.Add(1)
			w.lastErr.Store(&err)
			continue
		}
		w.written.Add(1)
		w.lastErr.Store(nil)
	}
}

// Stats returns the counts so far.
func (w *Writer) Stats() Stats {
	s := Stats{Written: w.written.Load(), Dropped: w.dropped.Load(), Failed: w.failed.Load()}
	if p := w.lastErr.Load(); p != nil {
		s.LastErr = *p
	}
	return s
}

// ErrStuck is returned by Close when the destination did not take the queued
// writes in time.
var ErrStuck = errors.New("lossy: destination did not drain in time")

// Close stops accepting writes and waits up to timeout for the queued ones
// to reach the destination. If the destination is stuck it returns ErrStuck;
// the goroutine then ends once the destination returns (for a pipe, when its
// reader goes away or the file is closed).
func (w *Writer) Close(timeout time.Duration) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
		return ErrStuck
	}
}
