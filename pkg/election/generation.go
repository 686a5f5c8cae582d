package election

import "context"

// Generations is implemented by backends that let candidates publish the
// version of the workload they run (Config.Generation), so that a rolling
// update moves leadership once: a waiting candidate of an older generation
// that sees a newer one queued behind it queues again behind it, so when the
// old leader goes, its successor runs the new version. The leader itself
// never steps back for this: it leads until it is terminated or resigns.
type Generations interface {
	// WaitNewer publishes gen as cand's generation, then blocks until a
	// candidate with a greater generation is queued behind cand, and returns
	// nil; or until ctx ends or the backend fails, and returns that error.
	WaitNewer(ctx context.Context, cand Candidacy, gen int64) error
}
