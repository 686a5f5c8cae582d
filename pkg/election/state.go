package election

import "fmt"

// State is where the engine is in its cycle; the package doc's table lists
// every transition. Status.State carries it, logs and metrics print its
// String.
type State int

// The engine's states.
const (
	// StateStopped: Run has not started or has returned.
	StateStopped State = iota
	// StateCampaigning: a candidacy is being started or waits to win, and
	// no other leader is known.
	StateCampaigning
	// StateFollowing: a candidacy waits to win while another candidate is
	// known to lead. It is StateCampaigning as seen from outside: the
	// engine's loop does the same in both, and the observer's reports move
	// the published state between them.
	StateFollowing
	// StateLeading: this candidate leads and its validity deadline has not
	// passed.
	StateLeading
	// StateHoldingOff: it resigned on request and waits one hold-off
	// (default TTL) before campaigning again, so a peer takes over.
	StateHoldingOff
	// StateBackingOff: the backend failed; it waits one backoff step
	// before trying again.
	StateBackingOff
	// StateStandingAside: the Gate says this candidate may not stand (its
	// application is unhealthy); it holds no candidacy, so it is never
	// chosen, and stands again when the Gate allows.
	StateStandingAside
)

// States lists every state, in order.
var States = []State{StateStopped, StateCampaigning, StateFollowing, StateLeading, StateHoldingOff, StateBackingOff, StateStandingAside}

var stateNames = [...]string{"stopped", "campaigning", "following", "leading", "holding-off", "backing-off", "standing-aside"}

// String is the state's name as /status, logs and metrics show it.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// transitions is the table of the package doc: the only edges the loop
// may take. Following and Campaigning differ only by what is observed, so
// they share their edges (and move between each other).
var transitions = map[State][]State{
	StateStopped:       {StateCampaigning, StateStandingAside},
	StateCampaigning:   {StateFollowing, StateLeading, StateCampaigning, StateBackingOff, StateStopped, StateStandingAside},
	StateFollowing:     {StateCampaigning, StateLeading, StateFollowing, StateBackingOff, StateStopped, StateStandingAside},
	StateLeading:       {StateCampaigning, StateHoldingOff, StateStopped, StateStandingAside},
	StateHoldingOff:    {StateCampaigning, StateStopped, StateStandingAside},
	StateBackingOff:    {StateCampaigning, StateStopped, StateStandingAside},
	StateStandingAside: {StateCampaigning, StateStopped},
}

// CanTransition reports whether the engine may go from one state to the
// other, as the package doc's table says.
func CanTransition(from, to State) bool {
	if from == to {
		return true // re-publishing a state is not a transition
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// StepDownReason says why a leader stopped leading; logs and the
// stepped_down_total metric use the same values.
type StepDownReason string

// Why a leader stops leading.
const (
	// ReasonResigned: it was asked to (Engine.Resign, POST /resign).
	ReasonResigned StepDownReason = "resigned"
	// ReasonHandedOver: it handed leadership to a chosen candidate
	// (Engine.HandOver, POST /resign?to=).
	ReasonHandedOver StepDownReason = "handed-over"
	// ReasonDeadline: its validity deadline passed with no acknowledged
	// renewal (the backend is slow, unreachable, or this process paused).
	ReasonDeadline StepDownReason = "deadline"
	// ReasonLost: the backend said its lease or lock is gone, or a newer
	// term was observed.
	ReasonLost StepDownReason = "lost"
	// ReasonShutdown: Run's context ended.
	ReasonShutdown StepDownReason = "shutdown"
	// ReasonUnhealthy: the Gate said this candidate may no longer stand
	// (its application failed its health checks); it resigned.
	ReasonUnhealthy StepDownReason = "unhealthy"
)

// StepDownReasons lists every reason, so metrics can create their series
// up front.
var StepDownReasons = []StepDownReason{ReasonResigned, ReasonHandedOver, ReasonDeadline, ReasonLost, ReasonShutdown, ReasonUnhealthy}

// Problems shown in Status.Problem while the backend fails.
const (
	// ProblemUnreachable: a backend call failed or timed out.
	ProblemUnreachable = "backend unreachable"
	// ProblemDenied: the backend refused the credentials or permissions.
	ProblemDenied = "permission denied"
)
