package etcd_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/etcdproc"
	"github.com/leader-elector/leader-elector/pkg/election"
	"github.com/leader-elector/leader-elector/pkg/election/etcd"
)

// memberFault is something that happens to one etcd member process.
type memberFault struct {
	name string
	// raft: the member that leads etcd's Raft group; else another one.
	raft bool
	// kill: SIGKILL; else SIGSTOP (a hung process: its connections stay
	// open, the kernel still accepts new ones, nothing is answered).
	kill bool
}

var memberFaults = []memberFault{
	{name: "hung-raft-leader", raft: true},
	{name: "hung-member"},
	{name: "killed-raft-leader", raft: true, kill: true},
	{name: "killed-member", kill: true},
}

// TestLeaderAgainAfterAHungOrKilledMember freezes (SIGSTOP) or kills one
// member of a three-member cluster of real etcd processes, the Raft leader
// or another, while three candidates that know every member's endpoint run
// the election, and checks that the election is without a leader for no
// more than 2 × TTL + 1 s: the lease extension etcd grants when its Raft
// leader changes (TTL + election timeout) plus the TTL. Every fault runs
// ETCD_MEMBER_TRIALS times (default 1) at TTL 2 s and, unless -short, at
// TTL 5 s; the log gives p50/p99/max per fault (docs/safety.md).
func TestLeaderAgainAfterAHungOrKilledMember(t *testing.T) {
	trials := 1
	if v := os.Getenv("ETCD_MEMBER_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ETCD_MEMBER_TRIALS=%q: want a positive integer", v)
		}
		trials = n
	}
	ttls := []time.Duration{2 * time.Second, 5 * time.Second}
	if testing.Short() {
		ttls = ttls[:1]
	}
	for _, ttl := range ttls {
		t.Run(fmt.Sprintf("ttl=%v", ttl), func(t *testing.T) {
			cluster := etcdproc.Start(t, 3)
			var cands []*recorder
			for _, id := range []string{"a", "b", "c"} {
				cands = append(cands, startRecorder(t, cluster.ClientURLs(), id, ttl))
			}
			bound := 2*ttl + time.Second
			gaps := map[string][]time.Duration{}
			for i := range trials {
				for _, f := range memberFaults {
					gap := memberFaultTrial(t, cluster, cands, f, i, ttl)
					gaps[f.name] = append(gaps[f.name], gap)
					t.Logf("%s trial %d: no leader for %v (bound %v)", f.name, i, gap.Round(time.Millisecond), bound)
					if gap > bound {
						t.Errorf("%s trial %d: no leader for %v, more than 2 × TTL + 1 s = %v", f.name, i, gap.Round(time.Millisecond), bound)
					}
				}
			}
			for _, f := range memberFaults {
				g := gaps[f.name]
				slices.Sort(g)
				t.Logf("TTL %v, %s, %d trials: no leader p50 %v, p99 %v, max %v", ttl, f.name, len(g),
					pct(g, 50).Round(time.Millisecond), pct(g, 99).Round(time.Millisecond), g[len(g)-1].Round(time.Millisecond))
			}
		})
	}
}

// pct returns the p-th percentile of sorted (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, i-1)]
}

// memberFaultTrial waits for an agreed leader, applies f to a member, and
// returns the longest time without a leader from the fault until 2 × TTL +
// 2 s after it (and until a leader is back). It heals the member before it
// returns, and fails the test if two candidates claimed leadership at once.
func memberFaultTrial(t *testing.T, cluster *etcdproc.Cluster, cands []*recorder, f memberFault, trial int, ttl time.Duration) time.Duration {
	t.Helper()
	waitAgreed(t, cands)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	raft, err := cluster.RaftLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target := raft
	if !f.raft {
		target = (raft + 1 + trial%2) % cluster.Len()
	}
	m := cluster.Member(target)
	start := time.Now()
	if f.kill {
		m.Stop()
	} else if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	// Observe at least until every lease granted before the fault has
	// expired, then until someone leads.
	observeUntil := start.Add(2*ttl + 2*time.Second)
	for time.Now().Before(observeUntil) || !anyLeader(cands) {
		if time.Since(start) > wait {
			break
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
	end := time.Now()
	if f.kill {
		if err := m.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	} else if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	if a, b, ok := overlap(cands, start, end); ok {
		t.Errorf("%s trial %d: %s and %s claimed leadership at once", f.name, trial, a, b)
	}
	gap := longestGap(cands, start, end)
	if gap > 2*ttl+time.Second || t.Failed() {
		t.Logf("%s trial %d began %s; candidates' logs:", f.name, trial, start.Format(time.RFC3339Nano))
		for _, c := range cands {
			t.Logf("%s:\n%s", c.id, c.log.String())
		}
	}
	for _, c := range cands {
		c.log.Reset()
	}
	return gap
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// recorder is a candidate whose leadership intervals are recorded.
type recorder struct {
	id     string
	engine *election.Engine
	log    *syncBuffer // the engine's and backend's logs

	mu sync.Mutex
	// intervals of leadership; the last one's end is zero while it lasts.
	intervals [][2]time.Time
}

func startRecorder(t *testing.T, endpoints []string, id string, ttl time.Duration) *recorder {
	t.Helper()
	r := &recorder{id: id, log: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := etcd.New(etcd.Options{Endpoints: endpoints, Prefix: etcd.DefaultPrefix, DialTimeout: etcd.DefaultDialTimeout},
		election.Params{Election: "members", Identity: id, TTL: ttl}, log)
	if err != nil {
		t.Fatal(err)
	}
	e, err := election.New(election.Config{Election: "members", Identity: id, Backend: b, TTL: ttl, OnStatus: r.onStatus, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.engine = e
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = b.Close()
	})
	return r
}

// onStatus records leadership edges; it runs before readers see a status.
func (r *recorder) onStatus(st election.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.intervals)
	open := n > 0 && r.intervals[n-1][1].IsZero()
	switch {
	case st.IsLeader && !open:
		r.intervals = append(r.intervals, [2]time.Time{st.Changed})
	case !st.IsLeader && open:
		r.intervals[n-1][1] = st.Changed
	}
}

// leading returns the recorder's leadership intervals clipped to [from, to].
func (r *recorder) leading(from, to time.Time) [][2]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][2]time.Time
	for _, iv := range r.intervals {
		b, e := iv[0], iv[1]
		if e.IsZero() || e.After(to) {
			e = to
		}
		if b.Before(from) {
			b = from
		}
		if b.Before(e) {
			out = append(out, [2]time.Time{b, e})
		}
	}
	return out
}

func anyLeader(cands []*recorder) bool {
	for _, c := range cands {
		if st, _ := c.engine.Status(); st.IsLeader {
			return true
		}
	}
	return false
}

// longestGap returns the longest time in [from, to] during which no
// candidate led.
func longestGap(cands []*recorder, from, to time.Time) time.Duration {
	var all [][2]time.Time
	for _, c := range cands {
		all = append(all, c.leading(from, to)...)
	}
	slices.SortFunc(all, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	var gap time.Duration
	covered := from
	for _, iv := range all {
		if d := iv[0].Sub(covered); d > gap {
			gap = d
		}
		if iv[1].After(covered) {
			covered = iv[1]
		}
	}
	return max(gap, to.Sub(covered))
}

// overlap reports two candidates whose leadership intervals in [from, to]
// intersect.
func overlap(cands []*recorder, from, to time.Time) (string, string, bool) {
	for i, a := range cands {
		for _, b := range cands[i+1:] {
			for _, x := range a.leading(from, to) {
				for _, y := range b.leading(from, to) {
					if x[0].Before(y[1]) && y[0].Before(x[1]) {
						return a.id, b.id, true
					}
				}
			}
		}
	}
	return "", "", false
}

// waitAgreed waits until one candidate leads and every other is ready and
// names it.
func waitAgreed(t *testing.T, cands []*recorder) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var leader string
		var sts []election.Status
		for _, c := range cands {
			st, _ := c.engine.Status()
			sts = append(sts, st)
			if st.IsLeader {
				leader = c.id
			}
		}
		ok := leader != ""
		for _, st := range sts {
			if !st.IsLeader && (!st.Ready || st.Leader != leader) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the candidates never agreed on a leader: %+v", sts)
		}
		tick := time.NewTimer(10 * time.Millisecond)
		<-tick.C
	}
}
