package election

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// source is a Source the test drives.
type source struct{ *broadcaster }

func newSource() source { return source{newBroadcaster(Status{}, nil)} }

func (s source) set(leading bool, token int64) {
	s.update(func(st *Status) { st.IsLeader, st.FencingToken = leading, token })
}

func TestWhileLeadingRunsExactlyWhileLeading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		var (
			mu      sync.Mutex
			started []int64
			running atomic.Int32
			ended   = make(chan int64, 10)
		)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			WhileLeading(ctx, src, func(ctx context.Context, term Status) {
				if running.Add(1) != 1 {
					t.Error("two runs at once")
				}
				mu.Lock()
				started = append(started, term.FencingToken)
				mu.Unlock()
				<-ctx.Done()
				running.Add(-1)
				ended <- term.FencingToken
			})
		}()
		synctest.Wait()
		if len(started) != 0 {
			t.Fatal("ran while not leading")
		}
		src.set(true, 1)
		synctest.Wait()
		src.set(false, 0) // step-down cancels the run
		synctest.Wait()
		if got := <-ended; got != 1 {
			t.Fatalf("ended term %d, want 1", got)
		}
		src.set(true, 2)
		synctest.Wait()
		src.set(true, 3) // a new term without a step-down in between
		synctest.Wait()
		if got := <-ended; got != 2 {
			t.Fatalf("ended term %d, want 2", got)
		}
		cancel()
		<-done
		if got := <-ended; got != 3 {
			t.Fatalf("ended term %d, want 3", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(started) != 3 || started[0] != 1 || started[1] != 2 || started[2] != 3 {
			t.Fatalf("runs for terms %v, want [1 2 3]", started)
		}
	})
}

func TestWhileLeadingWaitsForTheTermToEndAfterFnReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		var runs atomic.Int32
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			WhileLeading(ctx, src, func(context.Context, Status) { runs.Add(1) })
		}()
		src.set(true, 1)
		synctest.Wait()
		src.update(func(st *Status) { st.Ready = true }) // same term, another change
		synctest.Wait()
		if n := runs.Load(); n != 1 {
			t.Fatalf("%d runs in one term, want 1", n)
		}
		cancel()
		<-done
	})
}

func TestPublishRunsEveryPublisherAndJoinsErrors(t *testing.T) {
	src := newSource()
	errA := errors.New("a failed")
	var ranB atomic.Bool
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := Publish(ctx, src,
		PublisherFunc(func(context.Context, Source) error { return errA }),
		PublisherFunc(func(ctx context.Context, _ Source) error { ranB.Store(true); <-ctx.Done(); return nil }),
	)
	if !errors.Is(err, errA) || !ranB.Load() {
		t.Fatalf("Publish = %v (b ran: %v), want a's error and b run", err, ranB.Load())
	}
}
