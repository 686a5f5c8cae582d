package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/leader-elector/leader-elector/pkg/election"
)

// Backend kinds a trial runs on.
const (
	BackendEtcd    = "etcd"    // a three-member etcd cluster
	BackendRedis   = "redis"   // one redis-server
	BackendRedlock = "redlock" // three redis-servers
	// BackendKubernetes is a Lease on a real kube-apiserver (envtest).
	BackendKubernetes = "kubernetes"
)

// Backends lists the backends, in the order summaries print them.
func Backends() []string {
	return []string{BackendEtcd, BackendRedis, BackendRedlock, BackendKubernetes}
}

// Kind is a fault.
type Kind string

// The faults.
const (
	KillLeader     Kind = "kill-leader"      // SIGKILL the leading sidecar
	PauseShort     Kind = "pause-short"      // SIGSTOP the leader for less than the TTL
	PauseLong      Kind = "pause-long"       // SIGSTOP the leader for more than the TTL
	Blackhole      Kind = "blackhole"        // drop a sidecar's backend traffic, connections kept open
	Delay          Kind = "delay"            // delay a sidecar's backend traffic
	Reset          Kind = "reset"            // reset a sidecar's backend connections, refuse new ones
	KillMember     Kind = "kill-member"      // stop an etcd member that does not lead etcd's Raft group
	KillRaftLeader Kind = "kill-raft-leader" // stop etcd's Raft leader
	RedisRestart   Kind = "redis-restart"    // kill a redis-server and start it again empty
	// StallLog stops reading a sidecar's stderr once its pipe is full and
	// cuts it off from the backend: it must step down at its deadline
	// although every log write it might wait on would block.
	StallLog Kind = "stall-log"
	// etcd members that hang (SIGSTOP, as a stalled disk): connections stay
	// open and nothing is answered; SIGCONT at the heal.
	HungMember     Kind = "hung-member"      // an etcd member that does not lead etcd's Raft group
	HungRaftLeader Kind = "hung-raft-leader" // etcd's Raft leader
	// EarlyRevoke: etcd revokes every candidate's lease before its TTL, as
	// a deposed Raft leader that was paused as a whole process does when it
	// resumes (docs/safety.md), while the leader is cut off from etcd: it
	// cannot learn of it and claims until its own deadline, so nobody may
	// claim before that.
	EarlyRevoke Kind = "early-revoke"
	// StallHistory stops reading a sidecar's --history-file (a pipe) and
	// cuts it off from the backend: it must step down at its deadline with
	// its history writes blocked.
	StallHistory Kind = "stall-history"
	// FailHistory makes every write to a sidecar's --history-file fail
	// (EPIPE: the pipe's reader is gone) and cuts it off from the backend:
	// it must step down at its deadline and report the history as degraded
	// in /status. The checker reads its claims in that span from its
	// client's polls (see Run.Gaps).
	FailHistory Kind = "fail-history"
	// Redis faults; see redis.go.
	RedisEvict          Kind = "redis-evict"           // a master turns to an evicting maxmemory-policy under memory pressure
	RedisDeny           Kind = "redis-deny"            // the sidecars' Redis user loses one command the election needs
	RedlockLink         Kind = "redlock-link"          // delay or drop between one candidate and one Redlock master
	RedlockRollRestarts Kind = "redlock-roll-restarts" // restart every Redlock master empty, one at a time
)

// Kinds lists every fault, in the order summaries print them. Plans draw
// faults from this list, so adding a kind changes the plans seeds map to.
func Kinds() []Kind {
	return []Kind{KillLeader, PauseShort, PauseLong, Blackhole, Delay, Reset, KillMember, KillRaftLeader, RedisRestart,
		StallLog, HungMember, HungRaftLeader, RedisEvict, RedisDeny, RedlockLink, RedlockRollRestarts,
		StallHistory, FailHistory, SidecarRestart, SidecarTwin, Rollout, GateFreeze, GateKill, EarlyRevoke}
}

// nemesis is what the suite knows of one fault kind: where it applies, how
// a plan draws its parameters, and how a trial injects and heals it. See
// doc.go for how to add a kind.
type nemesis struct {
	// backends the kind applies to; nil: every backend.
	backends []string
	// atSidecar: the fault hits one sidecar, the leader or a follower as
	// Fault.AtLeader says (plans print which).
	atSidecar bool
	// plan draws the fault's hold and parameters from rng (Kind, AtLeader
	// and Pick are drawn already). It must draw the same numbers for the
	// same seed every time: plans are replayed from seeds.
	plan func(rng *rand.Rand, f *Fault, ttl time.Duration)
	// resolve is called when the round starts, with the leader of the
	// moment: it picks the fault's target and returns its injection, run
	// at f.Offset, and its heal, run at f.Offset + f.Hold. A heal must be
	// idempotent with trial.healAll, which runs after every round.
	resolve func(tr *trial, f Fault, at *targets) (inject, heal func())
	// settleExtra is added to the round's bound on the time to one agreed
	// leader after the heal (see Record.Rounds).
	settleExtra time.Duration
	// refusesNewPods: while the fault holds, a sidecar started then cannot
	// become ready (its backend refuses it), so a rollout in the same round
	// (which waits for each new pod's readiness and holds up the round's
	// other actions meanwhile) starts only after this fault's heal.
	refusesNewPods bool
	// waitsForNewPods: the injection starts pods and waits until they are
	// ready (a rollout).
	waitsForNewPods bool
}

// nemeses returns the table of every kind.
func nemeses() map[Kind]nemesis {
	etcd := []string{BackendEtcd}
	redis := []string{BackendRedis, BackendRedlock}
	redlock := []string{BackendRedlock}
	hold := func(lo, hi func(ttl time.Duration) time.Duration) func(*rand.Rand, *Fault, time.Duration) {
		return func(rng *rand.Rand, f *Fault, ttl time.Duration) { f.Hold = between(rng, lo(ttl), hi(ttl)) }
	}
	fixed := func(d time.Duration) func(time.Duration) time.Duration {
		return func(time.Duration) time.Duration { return d }
	}
	plus := func(k int64, d time.Duration) func(time.Duration) time.Duration {
		return func(ttl time.Duration) time.Duration { return time.Duration(k)*ttl + d }
	}
	return map[Kind]nemesis{
		KillLeader: {plan: hold(fixed(0), fixed(2*time.Second)), resolve: (*trial).killLeader},
		PauseShort: {plan: hold(fixed(200*time.Millisecond), func(ttl time.Duration) time.Duration { return ttl * 3 / 4 }),
			resolve: (*trial).pauseLeader},
		// Well past the TTL, so the successor has won and written before the
		// paused pod wakes with its stale token.
		PauseLong: {plan: hold(plus(1, 1500*time.Millisecond), plus(1, 3*time.Second)), resolve: (*trial).pauseLeader},
		Blackhole: {atSidecar: true, plan: hold(fixed(500*time.Millisecond), plus(1, 2*time.Second)), resolve: (*trial).link},
		Reset:     {atSidecar: true, plan: hold(fixed(500*time.Millisecond), plus(1, 2*time.Second)), resolve: (*trial).link},
		Delay: {atSidecar: true, resolve: (*trial).link, plan: func(rng *rand.Rand, f *Fault, ttl time.Duration) {
			f.Hold = between(rng, time.Second, ttl+2*time.Second)
			f.Delay = between(rng, 100*time.Millisecond, ttl*3/4)
		}},
		KillMember:     {backends: etcd, plan: hold(fixed(0), plus(1, time.Second)), resolve: (*trial).member},
		KillRaftLeader: {backends: etcd, plan: hold(fixed(0), plus(1, time.Second)), resolve: (*trial).member},
		// Often past 2 × TTL + 1 s, so the election must get on without the
		// member rather than wait for it to come back.
		HungMember:     {backends: etcd, plan: hold(fixed(500*time.Millisecond), plus(2, 2*time.Second)), resolve: (*trial).member},
		HungRaftLeader: {backends: etcd, plan: hold(fixed(500*time.Millisecond), plus(2, 2*time.Second)), resolve: (*trial).member},
		// Held past the TTL, so the cut-off leader's deadline falls inside.
		EarlyRevoke:  {backends: etcd, plan: hold(plus(1, 500*time.Millisecond), plus(1, 2*time.Second)), resolve: (*trial).earlyRevoke},
		RedisRestart: {backends: redis, plan: hold(fixed(0), plus(1, time.Second)), resolve: (*trial).redisRestart},
		// Past the TTL, so the deadline falls while the output is stalled
		// or failing.
		StallLog:     {atSidecar: true, plan: hold(plus(1, 500*time.Millisecond), plus(1, 3*time.Second)), resolve: (*trial).stallLog},
		StallHistory: {atSidecar: true, plan: hold(plus(1, 500*time.Millisecond), plus(1, 3*time.Second)), resolve: (*trial).history},
		FailHistory:  {atSidecar: true, plan: hold(plus(1, 500*time.Millisecond), plus(1, 3*time.Second)), resolve: (*trial).history},
		// Redis faults; see redis.go. When every candidate was refused, each
		// backs off (up to election.DefaultRetryMax) before it tries again.
		RedisEvict:          {backends: redis, plan: newRedisFault, resolve: (*trial).redisFault, settleExtra: election.DefaultRetryMax, refusesNewPods: true},
		RedisDeny:           {backends: redis, plan: newRedisFault, resolve: (*trial).redisFault, settleExtra: election.DefaultRetryMax, refusesNewPods: true},
		RedlockLink:         {backends: redlock, atSidecar: true, plan: newRedisFault, resolve: (*trial).redisFault},
		RedlockRollRestarts: {backends: redlock, plan: newRedisFault, resolve: (*trial).redisFault},
		// Operations and readiness-gate faults; see ops.go and gate.go. On
		// every backend: one without election.Reclaimer pays a TTL for a
		// restart, which is a fault worth injecting too.
		SidecarRestart: {atSidecar: true, plan: newOpsFault, resolve: (*trial).sidecarRestart},
		SidecarTwin:    {atSidecar: true, plan: newOpsFault, resolve: (*trial).sidecarTwin},
		Rollout:        {plan: newOpsFault, resolve: (*trial).rolloutFault, waitsForNewPods: true},
		GateFreeze:     {plan: newOpsFault, resolve: (*trial).gateFault},
		GateKill:       {plan: newOpsFault, resolve: (*trial).gateFault},
	}
}

// kindsFor lists the kinds that apply to backend, in the order of Kinds.
func kindsFor(backend string) []Kind {
	table := nemeses()
	var out []Kind
	for _, k := range Kinds() {
		if n := table[k]; n.backends == nil || slices.Contains(n.backends, backend) {
			out = append(out, k)
		}
	}
	return out
}

func targetsSidecar(k Kind) bool { return nemeses()[k].atSidecar }

// Fault is one planned fault.
type Fault struct {
	Kind Kind
	// Offset is when it starts after the first fault of its round; Hold how
	// long it lasts.
	Offset, Hold time.Duration
	// AtLeader: a link fault targets the leader rather than a follower.
	AtLeader bool
	// Pick chooses among followers, members or servers.
	Pick int
	// Delay is the added latency of a Delay fault.
	Delay time.Duration
}

func (f Fault) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s hold=%v", f.Kind, f.Hold.Round(time.Millisecond))
	if f.Offset > 0 {
		fmt.Fprintf(&b, " offset=%v", f.Offset.Round(time.Millisecond))
	}
	if f.Delay > 0 {
		fmt.Fprintf(&b, " delay=%v", f.Delay.Round(time.Millisecond))
	}
	if targetsSidecar(f.Kind) {
		if f.AtLeader {
			b.WriteString(" at=leader")
		} else {
			b.WriteString(" at=follower")
		}
	}
	return b.String()
}

// Handover is a graceful change of leader made between fault rounds: it
// makes terms cheaply, and every one of them is checked like the terms the
// faults end.
type Handover string

// The handovers.
const (
	// HandoverResign is POST /resign to the leader's control socket: it
	// gives the term up to whoever is next.
	HandoverResign Handover = "resign"
	// HandoverSwitchover is POST /resign?to=<follower>: a planned
	// switchover to a chosen candidate (a plain resign where the backend
	// cannot hand over to a chosen one).
	HandoverSwitchover Handover = "switchover"
	// HandoverRestart is SIGTERM to the leader (a rolling restart: it
	// resigns on its way out), then a new process under the same identity.
	HandoverRestart Handover = "sigterm-restart"
)

// Handovers lists the handovers, in the order summaries print them.
func Handovers() []Handover {
	return []Handover{HandoverResign, HandoverSwitchover, HandoverRestart}
}

// Round is one fault round of a trial: its faults, each started at its
// offset and healed after its hold; then everything heals and the runner
// waits for one agreed leader (the liveness bound is checked per round);
// then the handovers, one after the other, each waiting for the next
// agreed leader and a register write in its term.
type Round struct {
	Faults    []Fault
	Handovers []Handover
}

// Shape is how many rounds a trial has and how many handovers follow each
// round's heal. It is part of what a plan is derived from: a seed replays
// the same plan only with the same shape.
type Shape struct {
	Rounds, Handovers int
}

// Plan is everything a trial does, derived from its seed and shape alone,
// so a failing trial is replayed by running its seed again.
type Plan struct {
	Seed    int64
	Backend string
	// OneMember: each etcd sidecar reaches only "its" member (i mod 3)
	// rather than all three.
	OneMember bool
	Shape     Shape
	Rounds    []Round
}

// Faults returns every fault of every round, in order.
func (p Plan) Faults() []Fault {
	var out []Fault
	for _, r := range p.Rounds {
		out = append(out, r.Faults...)
	}
	return out
}

func (p Plan) String() string {
	rs := make([]string, len(p.Rounds))
	for i, r := range p.Rounds {
		fs := make([]string, len(r.Faults))
		for j, f := range r.Faults {
			fs[j] = f.String()
		}
		rs[i] = strings.Join(fs, " + ")
		if len(r.Handovers) > 0 {
			rs[i] += fmt.Sprintf(", %d handovers", len(r.Handovers))
		}
	}
	topo := ""
	if p.Backend == BackendEtcd {
		topo = " endpoints=all"
		if p.OneMember {
			topo = " endpoints=one"
		}
	}
	return fmt.Sprintf("seed=%d backend=%s%s rounds=[%s]", p.Seed, p.Backend, topo, strings.Join(rs, "; "))
}

// NewPlan derives a trial's plan from its seed and shape: the backend, the
// topology, and per round one fault or, a third of the time, a combination
// of two different ones, then shape.Handovers handovers (a restart one time
// in ten, a switchover three in ten, else a resign).
func NewPlan(seed int64, ttl time.Duration, shape Shape) Plan {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6c6561646572))
	p := Plan{Seed: seed, Shape: shape}
	p.Backend = Backends()[rng.IntN(len(Backends()))]
	p.OneMember = rng.IntN(2) == 0
	kinds := kindsFor(p.Backend)
	for range max(1, shape.Rounds) {
		var r Round
		first := kinds[rng.IntN(len(kinds))]
		r.Faults = append(r.Faults, newFault(rng, first, ttl))
		if rng.IntN(3) == 0 {
			second := first
			for second == first {
				second = kinds[rng.IntN(len(kinds))]
			}
			f := newFault(rng, second, ttl)
			f.Offset = between(rng, 0, time.Second)
			r.Faults = append(r.Faults, f)
		}
		for range shape.Handovers {
			h := HandoverResign
			switch n := rng.IntN(10); {
			case n < 1:
				h = HandoverRestart
			case n < 4:
				h = HandoverSwitchover
			}
			r.Handovers = append(r.Handovers, h)
		}
		p.Rounds = append(p.Rounds, r)
	}
	return p
}
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func newFault(rng *rand.Rand, k Kind, ttl time.Duration) Fault {
	f := Fault{Kind: k, AtLeader: rng.IntN(10) < 7, Pick: rng.IntN(1 << 16)}
	nemeses()[k].plan(rng, &f, ttl)
	return f
}
