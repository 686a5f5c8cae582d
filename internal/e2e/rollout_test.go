package e2e

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// rollout simulates a rolling update of 3 replicas with Kubernetes' default
// strategy for them (maxSurge 1, maxUnavailable 0): start one new pod, wait
// until it is ready, stop one old pod (SIGTERM, as the kubelet does), three
// times. victims lists which old pod goes at each step, by its place in the
// election's line when the rollout starts (0 is the leader). With
// generations, old pods run --generation 1 and new ones 2; without, neither
// passes it. It returns the number of leadership changes the sidecars'
// histories record.
func rollout(t *testing.T, backend backendArgs, generations bool, victims [3]int) int {
	t.Helper()
	n := rolloutWith(t, victims, func(id string, gen int) *sidecartest.Process {
		args := backend()
		if generations {
			args = backend("--generation", strconv.Itoa(gen))
		}
		return sidecartest.Start(t, bin, sidecartest.Options{ID: id, Args: args})
	})
	t.Logf("generations %v, old pods stopped in line order %v: %d leadership changes", generations, victims, n)
	return n
}

// rolloutWith is rollout with the sidecars started by start: old pods
// old-0..2 of generation 1, new pods new-0..2 of generation 2.
func rolloutWith(t *testing.T, victims [3]int, start func(id string, gen int) *sidecartest.Process) int {
	t.Helper()
	var all []*sidecartest.Process
	var old []*sidecartest.Process
	for i := range 3 {
		p := start(fmt.Sprintf("old-%d", i), 1)
		if i == 0 {
			p.WaitStatus("leadership", generous, func(s sidecartest.Status) bool { return s.IsLeader })
		} else {
			p.WaitStatus("following", generous, func(s sidecartest.Status) bool { return s.State == "following" })
		}
		old = append(old, p) // started one after another: line order
		all = append(all, p)
	}
	for step, v := range victims {
		n := start(fmt.Sprintf("new-%d", step), 2)
		all = append(all, n)
		// Ready, as its /readyz (the chart's readiness probe) says.
		n.WaitStatus("ready", generous, func(s sidecartest.Status) bool { return s.Ready })
		old[v].Signal(syscall.SIGTERM)
		if code := old[v].Wait(generous); code != 0 {
			t.Fatalf("%s exited with %d", old[v].ID, code)
		}
	}
	leader, _ := agree(t, all)
	// The history is written off the election's path: wait until the
	// leader's shows its term.
	for deadline := time.Now().Add(generous); ; {
		iv := leader.Intervals()
		if n := len(iv); n > 0 && iv[n-1].End == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s leads but its history does not say so", leader.ID)
		}
		<-time.After(5 * time.Millisecond)
	}
	assertNoOverlap(t, all)
	terms := 0
	for _, p := range all {
		terms += len(p.Intervals())
	}
	t.Logf("%s leads", leader.ID)
	return terms - 1
}

// A rolling update moves leadership once when candidates publish their
// generation, whatever order the old pods go in, on etcd and on Redis
// (before Redis implemented election.Generations: as often as without); without generations it
// moves once per old pod stopped while it leads: on etcd three times when
// the leader goes first and then each next in line, once when it goes
// last; on Redis, whose waiters race for a released lock, anywhere from
// once to three times.
func TestRolloutMovesLeadershipOnce(t *testing.T) {
	for _, tc := range []struct {
		name        string
		generations bool
		victims     [3]int
		want        int
	}{
		{"without generations, leader first", false, [3]int{0, 1, 2}, 3},
		{"without generations, leader second", false, [3]int{2, 0, 1}, 2},
		{"without generations, leader last", false, [3]int{2, 1, 0}, 1},
		{"with generations, leader first", true, [3]int{0, 1, 2}, 1},
		{"with generations, leader last", true, [3]int{2, 1, 0}, 1},
		{"with generations, leader second", true, [3]int{2, 0, 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onBackends(t, false, func(t *testing.T, backend string, args backendArgs) {
				got := rollout(t, args, tc.generations, tc.victims)
				switch {
				case backend == "redis" && !tc.generations:
					// Redis keeps no order among waiters: whoever tries
					// first after a release wins, an old pod or a new one.
					if got < 1 || got > 3 {
						t.Errorf("%d leadership changes, want 1 to 3", got)
					}
				case got != tc.want:
					t.Errorf("%d leadership changes, want %d", got, tc.want)
				}
			})
		})
	}
}
