package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"syscall"
	"time"
)

// The operations nemeses (issue 16): what a cluster does to the sidecars on
// purpose, injected like faults.
//
//   - sidecar-restart: SIGKILL one sidecar (the leader 70% of the time) and
//     start it again at once in the same slot, with the same --id,
//     --incarnation-file and --pod-uid, as the kubelet restarts a crashed
//     container in its pod. The restarted process releases its
//     predecessor's candidacy on a backend that can (election.Reclaimer);
//     elsewhere the candidacy expires after the TTL, which is still a fault
//     worth injecting.
//   - sidecar-twin: start a second process with the same --id in another
//     pod (its own --incarnation-file and --pod-uid), a misconfiguration;
//     once it runs, SIGKILL the original and restart it, at once or (half
//     the time) after TTL + 0.5–1.5 s, when its candidacy has expired and
//     the twin may lead; either way its release of its predecessor's
//     candidacy happens while a live process of the same identity
//     campaigns or leads, and must not touch that one's. The twin is
//     stopped (SIGTERM) at the heal. The histories must show no overlap,
//     whoever of the two leads.
//   - rollout: a Deployment's rolling update of the three replicas with the
//     default strategy (maxSurge 25% → 1, maxUnavailable 25% → 0): start one
//     pod of the next --generation, wait until its /readyz answers 200,
//     stop (SIGTERM) one old pod, three times; the old pods go in an order
//     drawn from the seed. The leadership changes between the rollout's
//     start and the next agreed leader after it are counted (issue 16's
//     target: one, where the backend supports generations).
//
// Every sidecar of every trial runs with an --incarnation-file and a
// --pod-uid of its pod and with --generation (1 until a rollout), as the
// chart runs it, so kill-leader's restarts release their predecessors too.
//
// The operations nemeses.
const (
	SidecarRestart Kind = "sidecar-restart" // SIGKILL a sidecar and restart it at once in its pod
	SidecarTwin    Kind = "sidecar-twin"    // a second process with the same --id in another pod
	Rollout        Kind = "rollout"         // a rolling update to the next --generation
)

func newOpsFault(rng *rand.Rand, f *Fault, ttl time.Duration) {
	switch f.Kind {
	case SidecarRestart, Rollout:
		f.Hold = 0 // the restart follows the kill at once; a rollout takes its own time
	case SidecarTwin:
		// Half the time the original restarts only once its candidacy has
		// expired, when the twin may lead: its restart must not take the
		// twin's candidacy for its own predecessor's.
		if rng.IntN(2) == 0 {
			f.Delay = between(rng, ttl+500*time.Millisecond, ttl+1500*time.Millisecond)
		}
		f.Hold = f.Delay + between(rng, ttl, ttl+2*time.Second)
	case GateFreeze:
		// Past the TTL, so a successor takes over while the leader is frozen.
		f.Hold = between(rng, ttl+1500*time.Millisecond, ttl+3*time.Second)
	case GateKill:
		f.Hold = between(rng, 0, 2*time.Second)
	}
}

// Restart is one sidecar killed and started again: at once, or after a
// delay in a sidecar-twin fault.
type Restart struct {
	Mono   int64  // just before the SIGKILL
	Run    string // the killed run
	Leader bool   // it claimed leadership when killed
	Twin   bool   // the restart of a sidecar-twin fault, while its twin ran (not timed)
}

// RolloutMark is one simulated rolling update.
type RolloutMark struct {
	Start, End int64 // the first new pod started; one leader agreed on after the last old pod stopped
	Generation int64 // of the new pods
	// Alone: no other fault was planned in its round, so the leadership
	// changes are the rollout's own.
	Alone bool
	// Stuck names a new pod that never became ready (the rollout went on).
	Stuck string
}

// OpsRecord is what the operations nemeses did.
type OpsRecord struct {
	Restarts []Restart
	Rollouts []RolloutMark
}

// The resolve functions of the operations and gate nemeses (see nemeses).

// sidecarRestart: SIGKILL the leader or a follower and restart it at once.
func (tr *trial) sidecarRestart(f Fault, at *targets) (inject, heal func()) {
	s := at.link(f)
	return func() { tr.restartNow(s, false) }, func() {}
}

// sidecarTwin: a twin of the leader or a follower, stopped at the heal.
func (tr *trial) sidecarTwin(f Fault, at *targets) (inject, heal func()) {
	of := at.link(f)
	var twin *slot
	return func() { twin = tr.startTwin(of, f.Delay) }, func() {
		if twin != nil {
			tr.retire(twin, "stop-twin")
		}
	}
}

// rolloutFault: the rollout is done when its injection returns.
func (tr *trial) rolloutFault(f Fault, _ *targets) (inject, heal func()) {
	return func() { tr.rollout(f) }, func() {}
}

// gateFault: freeze or kill the leader (a follower if another signal fault
// of the round took it) in a gate trial.
func (tr *trial) gateFault(f Fault, at *targets) (inject, heal func()) {
	s := at.signal(f)
	if f.Kind == GateFreeze {
		return func() {
			tr.gateTarget(s)
			tr.pause(s, string(f.Kind))
		}, func() { tr.resume(s) }
	}
	return func() {
		tr.gateTarget(s)
		tr.kill(s)
	}, func() { tr.restart(s) }
}

// restartNow SIGKILLs s's sidecar and starts it again at once with the
// same flags.
func (tr *trial) restartNow(s *slot, twin bool) {
	if s.killed || s.retired {
		return
	}
	leading := false
	if !s.paused {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := s.proc().Status(ctx)
		cancel()
		leading = err == nil && st.IsLeader
	}
	r := Restart{Mono: monoNow(), Run: s.run(), Leader: leading, Twin: twin}
	tr.kill(s)
	tr.restart(s)
	tr.rec.Ops.Restarts = append(tr.rec.Ops.Restarts, r)
}

// startTwin starts a process with of's identity in another pod, waits
// until it has joined the election, kills of, and restarts it after delay
// (at once when zero).
func (tr *trial) startTwin(of *slot, delay time.Duration) *slot {
	if of.killed || of.retired {
		return nil
	}
	twin := tr.newSlot(slices.Index(tr.slots, of), of.id, of.pod+"-twin", of.gen)
	tr.slots = append(tr.slots, twin)
	tr.event("start-twin", twin.run(), "of "+of.run())
	if !tr.waitReady(twin, setupTimeout) {
		tr.event("twin-not-ready", twin.run(), "")
	}
	if delay == 0 {
		tr.restartNow(of, true)
		return twin
	}
	r := Restart{Mono: monoNow(), Run: of.run(), Twin: true}
	tr.kill(of)
	wait(delay) // the original's candidacy expires meanwhile: the experiment
	tr.restart(of)
	tr.rec.Ops.Restarts = append(tr.rec.Ops.Restarts, r)
	return twin
}

// waitReady polls s's GET /readyz until it answers 200, as a readiness
// probe does.
func (tr *trial) waitReady(s *slot, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		code, _, err := s.proc().Get(ctx, "/readyz")
		cancel()
		if err == nil && code == http.StatusOK {
			return true
		}
		if s.proc().Exited() {
			return false
		}
		tick := time.NewTimer(20 * time.Millisecond)
		<-tick.C
	}
	return false
}

// retire stops s's pod for good (SIGTERM, as the kubelet does on deletion;
// a frozen sidecar is continued first so it can act on it).
func (tr *trial) retire(s *slot, why string) {
	if s.retired {
		return
	}
	tr.resume(s)
	s.client.setURL("")
	if !s.killed && !s.proc().Exited() {
		s.proc().Signal(syscall.SIGTERM)
		s.proc().Wait(setupTimeout)
	}
	s.retired = true
	tr.slots = slices.DeleteFunc(tr.slots, func(o *slot) bool { return o == s })
	tr.retired = append(tr.retired, s)
	tr.event(why, s.run(), "")
}

// all is every slot, active or retired.
func (tr *trial) all() []*slot { return append(slices.Clone(tr.slots), tr.retired...) }

// rolloutOrders are the orders in which a rollout stops the old pods, by
// their place among the active slots.
var rolloutOrders = [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}

// rollout replaces the three pods (twins aside) with pods of the next
// generation, one at a time.
func (tr *trial) rollout(f Fault) {
	var old []*slot
	for _, s := range tr.slots {
		if s.pod == s.id {
			old = append(old, s)
		}
	}
	tr.generation++
	mark := RolloutMark{Start: monoNow(), Generation: tr.generation, Alone: tr.roundFaults == 1}
	tr.event("rollout", "all", fmt.Sprintf("generation %d", tr.generation))
	order := rolloutOrders[f.Pick%len(rolloutOrders)]
	for step, i := range order {
		if i >= len(old) {
			continue
		}
		id := fmt.Sprintf("%c%d", 'a'+step, tr.generation)
		n := tr.newSlot(step, id, id, tr.generation)
		tr.slots = append(tr.slots, n)
		tr.event("start-pod", n.run(), fmt.Sprintf("generation %d", tr.generation))
		if !tr.waitReady(n, setupTimeout) && mark.Stuck == "" {
			mark.Stuck = n.run()
		}
		tr.retire(old[i], "stop-old-pod")
	}
	tr.waitAgreed(settleTimeout, nil)
	mark.End = monoNow()
	tr.rec.Ops.Rollouts = append(tr.rec.Ops.Rollouts, mark)
}

// checkOps derives the figures of the operations nemeses and checks their
// rules: a rollout's new pods become ready, and (through checkOverlaps,
// which sees every run of every pod) no restart, twin or rollout makes two
// leaders.
func checkOps(rec *Record, cs []claim, res *Result) {
	for _, r := range rec.Ops.Restarts {
		if !r.Leader || r.Twin {
			continue
		}
		// The first claim that starts after the kill, by anyone.
		for _, c := range cs {
			if c.Start > r.Mono {
				res.RestartToLeader = append(res.RestartToLeader, time.Duration(c.Start-r.Mono))
				break
			}
		}
	}
	for _, ro := range rec.Ops.Rollouts {
		if ro.Stuck != "" {
			res.violate("rollout to generation %d: %s never answered /readyz with 200", ro.Generation, ro.Stuck)
		}
		changes := 0
		for _, c := range cs {
			if c.Start > ro.Start && c.Start <= ro.End {
				changes++
			}
		}
		res.Rollouts = append(res.Rollouts, RolloutResult{Changes: changes, Alone: ro.Alone})
	}
}

// RolloutResult is one rollout's count of leadership changes.
type RolloutResult struct {
	Changes int
	Alone   bool // no other fault in the trial
}
