package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
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
	// Redis faults; see redis.go.
	RedisEvict          Kind = "redis-evict"           // a master turns to an evicting maxmemory-policy under memory pressure
	RedisDeny           Kind = "redis-deny"            // the sidecars' Redis user loses one command the election needs
	RedlockLink         Kind = "redlock-link"          // delay or drop between one candidate and one Redlock master
	RedlockRollRestarts Kind = "redlock-roll-restarts" // restart every Redlock master empty, one at a time
)

// Kinds lists every fault, in the order summaries print them.
func Kinds() []Kind {
	return []Kind{KillLeader, PauseShort, PauseLong, Blackhole, Delay, Reset, KillMember, KillRaftLeader, RedisRestart,
		StallLog, HungMember, HungRaftLeader, RedisEvict, RedisDeny, RedlockLink, RedlockRollRestarts,
		SidecarRestart, SidecarTwin, Rollout, GateFreeze, GateKill}
}

func kindsFor(backend string) []Kind {
	common := append([]Kind{KillLeader, PauseShort, PauseLong, Blackhole, Delay, Reset, StallLog}, opsKinds()...)
	common = append(common, gateKinds()...)
	switch backend {
	case BackendEtcd:
		return append(common, KillMember, KillRaftLeader, HungMember, HungRaftLeader)
	case BackendKubernetes:
		return common
	}
	return append(append(common, RedisRestart), redisKinds(backend)...)
}

// Fault is one planned fault.
type Fault struct {
	Kind Kind
	// Offset is when it starts after the first fault; Hold how long it lasts.
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
	if f.Kind == Delay {
		fmt.Fprintf(&b, " delay=%v", f.Delay.Round(time.Millisecond))
	}
	switch f.Kind {
	case Blackhole, Delay, Reset, StallLog, SidecarRestart, SidecarTwin:
		if f.AtLeader {
			b.WriteString(" at=leader")
		} else {
			b.WriteString(" at=follower")
		}
	}
	return b.String()
}

// Plan is everything a trial does, derived from its seed alone, so a
// failing trial is replayed by running its seed again.
type Plan struct {
	Seed    int64
	Backend string
	// OneMember: each etcd sidecar reaches only "its" member (i mod 3)
	// rather than all three.
	OneMember bool
	Faults    []Fault
}

func (p Plan) String() string {
	fs := make([]string, len(p.Faults))
	for i, f := range p.Faults {
		fs[i] = f.String()
	}
	topo := ""
	if p.Backend == BackendEtcd {
		topo = " endpoints=all"
		if p.OneMember {
			topo = " endpoints=one"
		}
	}
	return fmt.Sprintf("seed=%d backend=%s%s faults=[%s]", p.Seed, p.Backend, topo, strings.Join(fs, "; "))
}

// NewPlan derives a trial's plan from its seed: the backend, and one fault
// or, a third of the time, a combination of two different ones.
func NewPlan(seed int64, ttl time.Duration) Plan {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6c6561646572))
	p := Plan{Seed: seed}
	p.Backend = Backends()[rng.IntN(len(Backends()))]
	p.OneMember = rng.IntN(2) == 0
	kinds := kindsFor(p.Backend)
	n := 1
	if rng.IntN(3) == 0 {
		n = 2
	}
	first := kinds[rng.IntN(len(kinds))]
	p.Faults = append(p.Faults, newFault(rng, first, ttl))
	if n == 2 {
		second := first
		for second == first {
			second = kinds[rng.IntN(len(kinds))]
		}
		f := newFault(rng, second, ttl)
		f.Offset = between(rng, 0, time.Second)
		p.Faults = append(p.Faults, f)
	}
	return p
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func newFault(rng *rand.Rand, k Kind, ttl time.Duration) Fault {
	f := Fault{Kind: k, AtLeader: rng.IntN(10) < 7, Pick: rng.IntN(1 << 16)}
	switch k {
	case KillLeader:
		f.Hold = between(rng, 0, 2*time.Second)
	case PauseShort:
		f.Hold = between(rng, 200*time.Millisecond, ttl*3/4)
	case PauseLong:
		// Well past the TTL, so the successor has won and written before the
		// paused pod wakes with its stale token.
		f.Hold = between(rng, ttl+1500*time.Millisecond, ttl+3*time.Second)
	case Blackhole, Reset:
		f.Hold = between(rng, 500*time.Millisecond, ttl+2*time.Second)
	case StallLog:
		// Past the TTL, so the deadline falls while the log is stalled.
		f.Hold = between(rng, ttl+500*time.Millisecond, ttl+3*time.Second)
	case Delay:
		f.Hold = between(rng, time.Second, ttl+2*time.Second)
		f.Delay = between(rng, 100*time.Millisecond, ttl*3/4)
	case KillMember, KillRaftLeader, RedisRestart:
		f.Hold = between(rng, 0, ttl+time.Second)
	case HungMember, HungRaftLeader:
		// Often past 2 × TTL + 1 s, so the election must get on without the
		// member rather than wait for it to come back.
		f.Hold = between(rng, 500*time.Millisecond, 2*ttl+2*time.Second)
	default:
		newRedisFault(rng, &f, ttl)
		newOpsFault(rng, &f, ttl)
	}
	return f
}
