package election_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// fixedSource is a Source whose status the example sets by hand; in a
// program it is the *election.Engine.
type fixedSource struct {
	mu      sync.Mutex
	st      election.Status
	changed chan struct{}
}

func (s *fixedSource) Status() (election.Status, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st, s.changed
}

func (s *fixedSource) set(leading bool, token int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.IsLeader, s.st.FencingToken = leading, token
	close(s.changed)
	s.changed = make(chan struct{})
}

// WhileLeading runs work only while this instance leads, cancelling it at
// step-down; the term's fencing token goes with every write the work makes.
func ExampleWhileLeading() {
	src := &fixedSource{changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	started, stopped := make(chan int64), make(chan int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		election.WhileLeading(ctx, src, func(ctx context.Context, term election.Status) {
			started <- term.FencingToken
			<-ctx.Done() // step-down (or shutdown) ends the work
			stopped <- term.FencingToken
		})
	}()
	src.set(true, 7)
	fmt.Println("working with fencing token", <-started)
	src.set(false, 0)
	fmt.Println("stopped work of term", <-stopped)
	cancel()
	<-done
	// Output:
	// working with fencing token 7
	// stopped work of term 7
}
