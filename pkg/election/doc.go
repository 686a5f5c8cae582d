// Package election runs one candidate in a named leader election and reports,
// as a stream of Status values, who leads and whether this candidate does.
//
// What it does not guarantee: no lock service can stop a paused or partitioned
// process from believing it still leads. The engine narrows that window as far
// as a single process can — it claims leadership only while
// now < (send time of the last acknowledged lease grant or renewal) + TTL×(1−drift) − margin,
// on the monotonic clock, and steps down at that instant whether or not the
// backend answers — but a process that is frozen past its deadline wakes up
// stale. Systems that must never accept a stale leader's work compare the
// fencing token carried in every Status: it strictly increases from term to term.
//
// # States
//
// The engine is always in one State; Status.State, the logs and the
// leader_elector_state metric use the same names. Each state is entered by
// one function of the engine (become*), and the table below is the only
// set of edges (CanTransition checks it; the engine's tests fail on any
// other).
//
//	state         event                                        next          published
//	stopped       Run starts                                   campaigning   state
//	campaigning   observer reports another leader              following     leader, token, ready
//	following     observer reports no leader (or ourselves)    campaigning   no leader named
//	campaigning,  Campaign returns a verified term before      leading       is_leader, token, since
//	following       the validity deadline
//	campaigning,  won after the deadline; ErrLost              campaigning   (fresh candidacy)
//	following
//	campaigning,  grant or campaign fails (not ErrLost)        backing-off   not ready, no leader, problem
//	following
//	leading       deadline passes with no acknowledged renewal campaigning   not leader (reason deadline)
//	leading       Renew returns ErrLost, or a newer term seen  campaigning   not leader (reason lost)
//	leading       Resign                                       holding-off   not leader (reason resigned)
//	leading       Run's context ends                           stopped       not leader (reason shutdown)
//	holding-off   hold-off elapses (default one TTL)           campaigning
//	backing-off   backoff elapses                              campaigning
//	any but       the Gate closes (application unhealthy):     standing-aside not leader (reason unhealthy),
//	  leading       the candidacy is resigned (leaves the queue)               not_standing says why
//	leading       the Gate closes: step down, BeforeRelease,   standing-aside
//	                resign so a standing peer takes over
//	standing-     the Gate opens                               campaigning
//	  aside
//	any           Run's context ends                           stopped
//
// A step-down is published before any backend call (the bounded resign
// comes after), so nothing a backend does can delay it. While any backend
// call fails, the instance is not ready and names no leader (the last one
// it knew may have stepped down since); Status.Problem says why, and the
// failure is logged once when it starts and once when it ends.
//
// # Backends and publishers
//
// Backends (pkg/election/etcd, pkg/election/redislock) implement Backend;
// the contract is on that type and checked by the conformance suite in
// pkg/election/electiontest. Publishers (HTTP, Kubernetes labels, readiness
// gate and events) implement Publisher: they read a Source and never talk to
// a backend. WhileLeading runs a function exactly while this instance leads.
package election
