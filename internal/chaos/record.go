package chaos

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/leader-elector/leader-elector/pkg/history"
)

// Event is one nemesis action, stamped on CLOCK_MONOTONIC like the histories.
type Event struct {
	Mono   int64  `json:"mono_ns"`
	Action string `json:"action"` // e.g. "sigstop", "blackhole", "heal"
	Target string `json:"target"` // a sidecar identity, an etcd member or a Redis server
	Detail string `json:"detail,omitempty"`
}

// Pause is a span during which one sidecar process was stopped (SIGSTOP).
// Cont is when it was continued, or killed while stopped.
type Pause struct {
	Run        string // Run.Name of the paused process
	Stop, Cont int64
}

// Run is one process of one candidate: a candidate killed and restarted
// has several runs.
type Run struct {
	Identity string
	// Pod is the pod the process ran in when it is not named Identity (a
	// twin: the same --id in another pod, see ops.go).
	Pod       string
	Instance  int // 0 for the first process of Identity, then 1, 2, ...
	History   []history.Entry
	Intervals []history.Interval // closed at the process's exit, or at Record.End
	// Gaps are spans in which the run's history output failed
	// (fail-history): entries written then are lost, so the checker takes
	// the run's claims in a gap from its client's polls instead.
	Gaps []Gap
	// Exited is when the process's exit was noticed (0: still running at
	// Record.End).
	Exited int64
}

// Gap is a span of a run's history that may be missing entries: From is
// the last entry received before the output failed (or 0), To the first
// one received after it was mended (0: none; the gap lasts to the run's
// end).
type Gap struct{ From, To int64 }

// Name labels the run in reports, e.g. "b#1", or "a@a-twin#0" for a process
// with identity a in pod a-twin.
func (r Run) Name() string {
	if r.Pod != "" && r.Pod != r.Identity {
		return fmt.Sprintf("%s@%s#%d", r.Identity, r.Pod, r.Instance)
	}
	return fmt.Sprintf("%s#%d", r.Identity, r.Instance)
}

// Write is one attempt of a client to write to the fenced register.
type Write struct {
	Writer    string `json:"writer"`     // identity of the sidecar whose /leader answered
	Token     int64  `json:"token"`      // the token that answer carried
	PollStart int64  `json:"poll_start"` // mono before GET /leader
	PollEnd   int64  `json:"poll_end"`   // mono after its answer
	At        int64  `json:"at"`         // mono when the register decided
	Accepted  bool   `json:"accepted"`
	Held      bool   `json:"held,omitempty"` // the write waited out a pause of its pod
}

// Record is everything a trial observed, the checker's input.
type Record struct {
	Seed    int64
	Backend string
	TTL     time.Duration
	// Validity is the longest a candidate may claim leadership after sending
	// its last acknowledged request: TTL×(1−drift) − margin.
	Validity time.Duration
	// WakeGrace bounds how long a process continued after a pause may take
	// to record the step-down its passed deadline requires.
	WakeGrace time.Duration

	Runs   []Run
	Events []Event
	Pauses []Pause
	Writes []Write
	// RedisEmpty are the instants Redis servers came back empty.
	RedisEmpty []int64

	// Rounds are the fault rounds and handovers, in order.
	Rounds []RoundRecord
	// End is when observation ended.
	End int64
	// Races names the runs whose race-enabled binary reported a data race.
	Races []string

	// Ops is what the operations nemeses did (ops.go).
	Ops OpsRecord
	// GateMode: the sidecars published a readiness gate (gate.go); Gate is
	// every change of a pod's gate condition in the API server's order,
	// GateFaults the pods the gate faults hit, GateSettled how long after
	// the last round's agreed leader the pods showed its gate alone
	// (negative: never).
	GateMode    bool
	Gate        []GateObs
	GateFaults  []GateFault
	GateSettled time.Duration
}

// RoundRecord is what one round observed.
type RoundRecord struct {
	// Heal is when every fault of the round had been removed.
	Heal int64
	// Settled is how long after Heal the processes agreed on one leader;
	// negative when they never did.
	Settled time.Duration
	// SettleBound is the bound Settled is held to: TTL + 1 s, 2 × TTL + 1 s
	// when etcd's own Raft leader changed in the round (which extends every
	// lease by an election timeout), one TTL more on etcd (a successor waits
	// out a predecessor whose lease ended), plus the faults' settleExtra.
	SettleBound time.Duration
	// RaftLeaderChanged: etcd's Raft leader changed during the round.
	RaftLeaderChanged bool
	// Handovers are the round's graceful handovers, in order.
	Handovers []HandoverRecord
	// Degraded: for each fail-history fault of the round whose target led
	// when it was injected and had lost that term by the heal, whether its
	// /status reported the history as degraded before the heal (keyed by
	// run name).
	Degraded map[string]bool
}

// HandoverRecord is one graceful handover.
type HandoverRecord struct {
	Kind Handover
	// From is the run that led before; Start when the handover was asked.
	From  string
	Start int64
	// Took is how long until a new term was agreed on; negative when none
	// was within the runner's timeout.
	Took time.Duration
}

func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
