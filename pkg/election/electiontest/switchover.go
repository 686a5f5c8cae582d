package electiontest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// terms records every term any candidate claimed, in the order the
// candidates published them.
type terms struct {
	mu   sync.Mutex
	seen []election.Status
}

func (r *terms) hook(c *election.Config) {
	c.OnStatus = func(st election.Status) {
		if st.IsLeader {
			r.mu.Lock()
			defer r.mu.Unlock()
			if n := len(r.seen); n == 0 || r.seen[n-1].Identity != st.Identity || r.seen[n-1].FencingToken != st.FencingToken {
				r.seen = append(r.seen, st)
			}
		}
	}
}

// since returns the terms claimed from index i on.
func (r *terms) since(i int) []election.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]election.Status(nil), r.seen[i:]...)
}

func (r *terms) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func testSwitchover(t *testing.T, s *suite) {
	rec := &terms{}
	var nodes []*node
	for i := range 4 {
		nodes = append(nodes, s.start(t, fmt.Sprintf("c%d", i), rec.hook))
	}
	leader, st := agreed(t, nodes, 10*s.h.TTL)
	if !st.Switchover {
		if err := leader.engine.HandOver(t.Context(), others(nodes, leader)[0].id); !errors.Is(err, election.ErrHandoffUnsupported) {
			t.Fatalf("HandOver on a backend without election.Handoff = %v, want ErrHandoffUnsupported", err)
		}
		if st, _ := leader.engine.Status(); !st.IsLeader {
			t.Fatalf("after an unsupported HandOver: %+v, want still leading", st)
		}
		return
	}

	follower := others(nodes, leader)[0]
	if err := follower.engine.HandOver(t.Context(), leader.id); !errors.Is(err, election.ErrNotLeader) {
		t.Errorf("HandOver as a follower = %v, want ErrNotLeader", err)
	}
	before := rec.len()
	for _, to := range []string{"nobody", leader.id} {
		if err := leader.engine.HandOver(t.Context(), to); !errors.Is(err, election.ErrNotInLine) {
			t.Errorf("HandOver(%q) = %v, want ErrNotInLine", to, err)
		}
	}
	if now, _ := leader.engine.Status(); !now.IsLeader || now.FencingToken != st.FencingToken || rec.len() != before {
		t.Fatalf("after refused handovers: %+v, %d new terms; want the same term, never interrupted", now, rec.len()-before)
	}

	// Hand over to each other candidate in turn, from the back of the line
	// where possible, so candidates ahead of the successor must re-queue.
	last := st.FencingToken
	for round := range 3 {
		eventually(t, 10*s.h.TTL, "every other candidate to follow", func() bool {
			for _, n := range others(nodes, leader) {
				if st, _ := n.engine.Status(); st.State != election.StateFollowing {
					return false
				}
			}
			return true
		})
		next := others(nodes, leader)[len(nodes)-2-round%(len(nodes)-1)]
		mark := rec.len()
		start := time.Now()
		// Following (it sees the leader) may come before the candidacy is in
		// line; a refused handover changes nothing, so ask again.
		eventually(t, 10*s.h.TTL, next.id+" to be in line", func() bool {
			err := leader.engine.HandOver(t.Context(), next.id)
			if err != nil && !errors.Is(err, election.ErrNotInLine) {
				t.Fatalf("round %d: HandOver(%s → %s): %v", round, leader.id, next.id, err)
			}
			return err == nil
		})
		if st, _ := leader.engine.Status(); st.IsLeader || st.State != election.StateHoldingOff {
			t.Fatalf("round %d: after HandOver returned the old leader reads %+v, want holding off", round, st)
		}
		eventually(t, 10*s.h.TTL, next.id+" to lead", func() bool {
			st, _ := next.engine.Status()
			return st.IsLeader
		})
		took := time.Since(start)
		t.Logf("round %d: switchover %s → %s took %v", round, leader.id, next.id, took)
		if took > s.h.TTL/2 {
			t.Errorf("round %d: switchover took %v, want well under the TTL %v", round, took, s.h.TTL)
		}
		nl, nst := agreed(t, nodes, 10*s.h.TTL)
		for _, term := range rec.since(mark) {
			if term.Identity != next.id {
				t.Fatalf("round %d: %s led (token %d) during a switchover to %s", round, term.Identity, term.FencingToken, next.id)
			}
		}
		if nl != next || nst.FencingToken <= last {
			t.Fatalf("round %d: %s leads with token %d; want %s with a token above %d", round, nl.id, nst.FencingToken, next.id, last)
		}
		leader, last = nl, nst.FencingToken
	}
}
