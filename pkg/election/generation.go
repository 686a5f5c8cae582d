package election

import "context"

// Generations is implemented by backends that let candidates publish the
// version of the workload they run (Config.Generation), so that a rolling
// update moves leadership once: a waiting candidate of an older generation
// that sees a newer one queued behind it queues again behind it, so when the
// old leader goes, its successor runs the new version. The leader itself
// never steps back for this: it leads until it goes, and then, if the
// backend also implements Handoff, hands over to the first candidate of the
// newest generation in line (NewerSuccessor) rather than to whoever is next.
//
// While generations are on, a waiting candidate reads ready only once its
// generation is published and it is in line (WaitNewer's queued), so that a
// rollout that waits for the new pod's readiness before stopping an old one
// never stops the old leader before the new pod can be its successor.
type Generations interface {
	// WaitNewer publishes gen as cand's generation, calls queued once cand is
	// in line with it published, then blocks until a candidate with a
	// greater generation is queued behind cand, and returns nil; or until
	// ctx ends or the backend fails, and returns that error. A backend whose
	// Campaign itself does not win while a newer generation waits (the
	// Lease backend: there is no queue to rejoin) never returns nil.
	WaitNewer(ctx context.Context, cand Candidacy, gen int64, queued func()) error
	// NewerSuccessor returns the identity of the first candidate in line
	// behind cand with the greatest generation above gen; "" if none.
	NewerSuccessor(ctx context.Context, cand Candidacy, gen int64) (string, error)
}
