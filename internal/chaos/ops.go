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
//     once it runs, SIGKILL and restart the original at once, so its
//     release of its predecessor's candidacy happens while a live process
//     of the same identity campaigns. The twin is stopped (SIGTERM) at the
//     heal. The histories must show no overlap, whoever of the two leads.
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
func opsKinds() []Kind { return []Kind{SidecarRestart, SidecarTwin, Rollout} }

// The operations nemeses and the readiness-gate ones (gate.go).
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
		f.Hold = between(rng, ttl, 2*ttl+2*time.Second)
	case GateFreeze:
		// Past the TTL, so a successor takes over while the leader is frozen.
		f.Hold = between(rng, ttl+1500*time.Millisecond, ttl+3*time.Second)
	case GateKill:
		f.Hold = between(rng, 0, 2*time.Second)
	}
}

// Restart is one sidecar killed and started again at once.
type Restart struct {
	Mono   int64  // just before the SIGKILL
	Run    string // the killed run
	Leader bool   // it claimed leadership when killed
	Twin   bool   // the restart of a sidecar-twin fault, while its twin ran
}

// RolloutMark is one simulated rolling update.
type RolloutMark struct {
	Start, End int64 // the first new pod started; one leader agreed on after the last old pod stopped
	Generation int64 // of the new pods
	// Alone: no other fault was planned in the trial, so the leadership
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

// opsFault resolves the operations and gate faults; ok is false for any
// other kind.
func (tr *trial) opsFault(f Fault, leader *slot, signalled map[*slot]bool) (inject, heal func(), ok bool) {
	nothing := func() {}
	switch f.Kind {
	case SidecarRestart:
		return func() { tr.restartNow(tr.opsTarget(f, leader), false) }, nothing, true
	case SidecarTwin:
		var twin *slot
		return func() { twin = tr.startTwin(tr.opsTarget(f, leader)) }, func() {
			if twin != nil {
				tr.retire(twin, "stop-twin")
			}
		}, true
	case Rollout:
		return func() { tr.rollout(f) }, nothing, true
	case GateFreeze, GateKill:
		// The leader when the fault starts, unless another signal fault
		// already took it.
		var s *slot
		pick := func() *slot {
			s = tr.leaderNow(leader)
			if signalled[s] {
				s = tr.follower(s, f.Pick)
			}
			signalled[s] = true
			tr.gateTarget(s)
			return s
		}
		if f.Kind == GateFreeze {
			return func() { tr.pause(pick(), string(f.Kind)) }, func() { tr.resume(s) }, true
		}
		return func() { tr.kill(pick()) }, func() { tr.restart(s) }, true
	}
	return nil, nil, false
}

// leaderNow returns the active sidecar that says it leads, or fallback if
// it is still active and none does, or else the first active one.
func (tr *trial) leaderNow(fallback *slot) *slot {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range tr.slots {
		if s.killed || s.paused || s.proc().Exited() {
			continue
		}
		if st, err := s.proc().Status(ctx); err == nil && st.IsLeader {
			return s
		}
	}
	if fallback != nil && !fallback.retired {
		return fallback
	}
	return tr.slots[0]
}

// follower picks an active slot other than not.
func (tr *trial) follower(not *slot, pick int) *slot {
	var fs []*slot
	for _, s := range tr.slots {
		if s != not {
			fs = append(fs, s)
		}
	}
	if len(fs) == 0 {
		return not
	}
	return fs[pick%len(fs)]
}

// opsTarget is the leader (f.AtLeader) or a follower when the fault starts.
func (tr *trial) opsTarget(f Fault, leader *slot) *slot {
	l := tr.leaderNow(leader)
	if f.AtLeader {
		return l
	}
	return tr.follower(l, f.Pick)
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
// until it has joined the election, and restarts of at once.
func (tr *trial) startTwin(of *slot) *slot {
	if of.killed || of.retired {
		return nil
	}
	twin := tr.newSlot(slices.Index(tr.slots, of), of.id, of.pod+"-twin", of.gen)
	tr.slots = append(tr.slots, twin)
	tr.event("start-twin", twin.run(), "of "+of.run())
	if !tr.waitReady(twin, setupTimeout) {
		tr.event("twin-not-ready", twin.run(), "")
	}
	tr.restartNow(of, true)
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
	mark := RolloutMark{Start: monoNow(), Generation: tr.generation, Alone: len(tr.plan.Faults) == 1}
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
	tr.waitAgreed(settleTimeout)
	mark.End = monoNow()
	tr.rec.Ops.Rollouts = append(tr.rec.Ops.Rollouts, mark)
}

// collectOps is a no-op hook kept for symmetry with the gate's record: the
// operations marks are written into the record as they happen.
func (tr *trial) collectOps() {
	if tr.gate != nil {
		tr.rec.Gate = tr.gate.record()
	}
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
