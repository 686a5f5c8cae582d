package chaos

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil/sidecartest"
)

// replaySeeds are seeds whose plans hold each operations and gate nemesis
// on the backends it matters most for, and early-revoke (on etcd only, so
// random seeds seldom pick it); TestChaosReplays runs them in the
// short suite so every kind is exercised on every `make test`, whatever the
// random seeds pick.
var replaySeeds = []struct {
	seed    int64
	kind    Kind
	backend string
}{
	{49, SidecarRestart, BackendEtcd},
	{84, SidecarTwin, BackendRedis}, // the original restarts after its candidacy expired
	{259, Rollout, BackendEtcd},
	{106, GateFreeze, BackendKubernetes},
	{13, GateKill, BackendEtcd},
	{82, EarlyRevoke, BackendEtcd},
}

// replayShape is the short suite's shape: the seeds above are for it.
var replayShape = Shape{Rounds: ciRounds, Handovers: ciHandovers}

// The replay seeds still select what they are meant to: a change to NewPlan
// that moves them fails here, not silently.
func TestReplaySeedsHoldTheirKinds(t *testing.T) {
	for _, r := range replaySeeds {
		p := NewPlan(r.seed, ttl, replayShape)
		if p.Backend != r.backend || !slices.ContainsFunc(p.Faults(), func(f Fault) bool { return f.Kind == r.kind }) {
			t.Errorf("seed %d plans %v, want %s on %s: pick new replay seeds", r.seed, p, r.kind, r.backend)
		}
	}
}

// TestChaosReplays runs the replay seeds as TestChaos runs its trials,
// ciParallel at a time (`make chaos` runs only TestChaos).
func TestChaosReplays(t *testing.T) {
	bin, err := sidecartest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	work := make(chan int, len(replaySeeds))
	for i := range replaySeeds {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range ciParallel {
		wg.Go(func() {
			for i := range work {
				r := replaySeeds[i]
				plan := NewPlan(r.seed, ttl, replayShape)
				t.Run(fmt.Sprintf("%s/seed=%d", r.kind, r.seed), func(t *testing.T) {
					out := RunTrial(t, bin, plan, ttl, os.Getenv("CHAOS_FAILURE_DIR"), os.Getenv("CHAOS_KEEP") != "")
					res := out.Result
					t.Logf("%v: settled in %v; restart → next claim %v; rollouts %+v; gate handover %v, gate settled %v",
						plan, roundDurations(res.Settled), res.RestartToLeader, res.Rollouts, res.GateHandover, out.Record.GateSettled)
				})
			}
		})
	}
	wg.Wait()
}

func gateRecord(obs ...GateObs) *Record {
	rec := record(run("a", [3]int64{10, 30, 5}), run("b", [3]int64{45, 90, 7}))
	rec.GateMode = true
	rec.Gate = obs
	rec.GateSettled = 100 * time.Millisecond
	return rec
}

func obs(tenths int64, pod string, on bool) GateObs {
	return GateObs{Mono: ds(tenths), Pod: pod, True: on, RV: fmt.Sprint(tenths)}
}

// The successor demotes the frozen pod before it sets its own gate: at no
// point are two pods True, and the handover is measured from the fault.
func TestGateDemotedBeforeTheSuccessorPasses(t *testing.T) {
	rec := gateRecord(obs(1, "a", false), obs(1, "b", false), obs(11, "a", true), obs(46, "a", false), obs(47, "b", true))
	rec.GateFaults = []GateFault{{Mono: ds(20), Pod: "a"}}
	res := Check(rec)
	if !res.Passed() || res.GateOverlaps != 0 {
		t.Fatalf("%+v", res)
	}
	if want := []time.Duration{2700 * time.Millisecond}; !slices.Equal(res.GateHandover, want) {
		t.Errorf("gate handover %v, want %v", res.GateHandover, want)
	}
}

// Two pods True at once, in the API server's order, is a violation however
// briefly; one episode counts once.
func TestGateTwoTrueIsAViolation(t *testing.T) {
	rec := gateRecord(obs(11, "a", true), obs(47, "b", true), obs(48, "c", true), obs(49, "a", false), obs(50, "c", false))
	res := Check(rec)
	if res.GateOverlaps != 1 {
		t.Errorf("gate overlaps %d, want 1", res.GateOverlaps)
	}
	wantViolation(t, res, "gate: pods [a b] had condition")
}

// A frozen leader's pod stays True until a successor exists: alone, that is
// the documented stale window, not a violation.
func TestGateStaleAloneIsNoViolation(t *testing.T) {
	rec := gateRecord(obs(11, "a", true))
	if res := Check(rec); !res.Passed() {
		t.Fatalf("%v", res.Violations)
	}
}

func TestGateNeverSettledIsAViolation(t *testing.T) {
	rec := gateRecord(obs(11, "a", true), obs(46, "a", false))
	rec.GateSettled = -1
	wantViolation(t, Check(rec), "never showed the agreed leader's condition")
}

// Gate rules apply only to trials that ran in gate mode.
func TestGateOffIgnoresGateRules(t *testing.T) {
	rec := gateRecord(obs(11, "a", true), obs(12, "b", true))
	rec.GateMode = false
	if res := Check(rec); !res.Passed() {
		t.Fatalf("%v", res.Violations)
	}
}

// A rollout's leadership changes are the claims that began between its
// start and the agreed leader after it.
func TestRolloutChangesCounted(t *testing.T) {
	rec := record(run("a", [3]int64{1, 30, 2}), run("b", [3]int64{31, 40, 3}), run("a2", [3]int64{41, 90, 5}))
	rec.Ops.Rollouts = []RolloutMark{{Start: ds(20), End: ds(50), Generation: 2, Alone: true}}
	res := Check(rec)
	if !res.Passed() {
		t.Fatalf("%v", res.Violations)
	}
	if want := []RolloutResult{{Changes: 2, Alone: true}}; !slices.Equal(res.Rollouts, want) {
		t.Errorf("rollouts %+v, want %+v", res.Rollouts, want)
	}
}

func TestRolloutStuckIsAViolation(t *testing.T) {
	rec := record(run("a", [3]int64{1, 90, 2}))
	rec.Ops.Rollouts = []RolloutMark{{Start: ds(20), End: ds(50), Generation: 2, Stuck: "b2#0"}}
	wantViolation(t, Check(rec), "b2#0 never answered /readyz")
}

// The time from the SIGKILL of a leading sidecar to the next claim by
// anyone; a twin's restart and a follower's are not measured.
func TestRestartToLeader(t *testing.T) {
	rec := record(run("a", [3]int64{1, 10, 2}), run("b", [3]int64{12, 90, 3}))
	rec.Ops.Restarts = []Restart{
		{Mono: ds(10) - 1, Run: "a#0", Leader: true},
		{Mono: ds(5), Run: "c#0"},
		{Mono: ds(9), Run: "a#0", Leader: true, Twin: true},
	}
	res := Check(rec)
	if want := []time.Duration{200*time.Millisecond + 1}; !slices.Equal(res.RestartToLeader, want) {
		t.Errorf("restart to leader %v, want %v", res.RestartToLeader, want)
	}
}

// A twin's runs are named by identity and pod, so they never mix with the
// original's in reports or in the pause bookkeeping.
func TestTwinRunName(t *testing.T) {
	for _, tc := range []struct {
		r    Run
		want string
	}{
		{Run{Identity: "a", Instance: 1}, "a#1"},
		{Run{Identity: "a", Pod: "a", Instance: 0}, "a#0"},
		{Run{Identity: "a", Pod: "a-twin", Instance: 0}, "a@a-twin#0"},
	} {
		if got := tc.r.Name(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}
