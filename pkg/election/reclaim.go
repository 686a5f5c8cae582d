package election

import "context"

// Reclaimer is implemented by backends that can release the candidacy a
// crashed earlier process of the same candidate left behind, so that a
// sidecar container restarted in the same pod does not keep leadership
// (or its place in line) for a TTL with nobody renewing it.
//
// The engine passes Handle's result for each new candidacy to
// Config.OnCandidacy before the candidacy campaigns; the caller records it
// somewhere only this pod's processes can write (the sidecar: a file on
// the pod's emptyDir, locked while a process runs). A later process that
// can prove the earlier one is dead (the sidecar: it holds that file's
// lock) calls Reclaim with the recorded handle before it starts its own
// engine.
type Reclaimer interface {
	// Handle names cand durably, as a short printable string; "" when there
	// is nothing to release later.
	Handle(cand Candidacy) string
	// Reclaim releases the candidacy named by handle, if it still exists and
	// belongs to this backend's identity in this election; a candidacy that
	// is already gone is not an error. It must remove nothing else: it
	// refuses (with an error saying why) when the handle now names anything
	// that is not this identity's.
	Reclaim(ctx context.Context, handle string) error
}
