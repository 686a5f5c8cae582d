package election

import (
	"context"
	"errors"
)

// Errors of a planned switchover (Engine.HandOver).
var (
	// ErrNotInLine means the chosen successor is not a live candidate of
	// this election (it never joined, it left, or it is this candidate).
	ErrNotInLine = errors.New("election: successor not in line")
	// ErrHandoffUnsupported means the backend cannot hand leadership to a
	// chosen candidate; Status.Switchover is false for it.
	ErrHandoffUnsupported = errors.New("election: this backend cannot hand leadership to a chosen candidate")
)

// Handoff is implemented by backends that can pass leadership to a chosen
// candidate and to no one else (a planned switchover, as Patroni's). The
// engine calls it only for a Candidacy this backend returned, while that
// candidacy leads and after the engine stopped claiming leadership
// (HandOver) or before (CheckSuccessor).
//
// The guarantee a backend gives by implementing it: when HandOver returns
// nil, the candidate named to is the only one that can win the next term,
// and its token is greater than the leader's; every other candidate that
// was ahead of it in line has lost its place (ErrLost) and queues again
// behind it, or, on a backend without a queue (the Lease backend), keeps
// waiting without winning. When HandOver returns an error wrapping
// ErrNotInLine, nothing changed: the leader's candidacy still leads with
// the same token. Any other error leaves the outcome unknown. A backend
// that gives this guarantee only among some candidates (the Lease backend:
// among leader-elector candidates, for one lease duration) says so in its
// documentation and its Caveats.
type Handoff interface {
	// CheckSuccessor reads, and changes nothing: nil if a candidate with
	// identity to is in line behind cand, an error wrapping ErrNotInLine
	// (saying why) if not, or a backend error.
	CheckSuccessor(ctx context.Context, cand Candidacy, to string) error
	// HandOver ends cand's term in one atomic step that makes to the next
	// leader; see the type's doc for what each result means.
	HandOver(ctx context.Context, cand Candidacy, to string) error
}
