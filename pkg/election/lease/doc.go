// Package lease implements leader election on a Kubernetes
// coordination.k8s.io/v1 Lease, compatible with client-go's
// tools/leaderelection LeaseLock, and adapts it to election.Backend
// (backend.go; the protocol itself does not depend on the engine).
//
// # What it does not guarantee
//
// The API server stores the Lease but never expires it: each candidate
// judges expiry with its own clock. A holder whose clock runs slow by more
// than the engine's drift allowance (1%), or that is paused longer than its
// validity (SIGSTOP, VM freeze), can still believe it leads after a follower
// took over; the fencing token is what protects data then. etcd, where the
// server expires the lease and the client measures its validity from the
// grant's send time, does not depend on followers' clocks; that is why etcd
// stays the primary backend and this one is the zero-infrastructure choice.
//
// # Protocol
//
//   - Mutual exclusion comes from the API server's optimistic concurrency:
//     every take, renewal and release is an update carrying the
//     resourceVersion it was based on, so of two writers judging the same
//     state only one succeeds. Creation of an absent Lease is the only
//     write without one (AlreadyExists settles that race).
//   - The leader's validity is measured from the send time of its last
//     acknowledged create or update (Term.Sent): no follower can see that
//     write before it was sent, and a follower waits the full lease
//     duration after seeing it.
//   - A follower takes an unreleased Lease only after it has seen the same
//     state (UID and resourceVersion) for the record's whole
//     leaseDurationSeconds on its own monotonic clock. The record's
//     acquireTime and renewTime come from other machines' clocks and are
//     never compared with ours. client-go's elector uses the same rule but
//     compares whole seconds; here the wait is exact.
//   - Followers watch the Lease (list, then watch from the list's
//     resourceVersion, both selected by metadata.name), so a release is
//     taken over within milliseconds. The watch only speeds things up:
//     a waiting candidate also acts when its own timer fires, so a dead
//     watch costs time, never safety.
//   - Release on shutdown and resign writes what client-go's elector writes
//     on release: holderIdentity "", leaseDurationSeconds 1, acquire and
//     renew times now, leaseTransitions unchanged. Candidates of either
//     kind take a released Lease at once.
//   - A renewal that fails with a conflict re-reads the Lease: if it still
//     shows this term (same UID, holder, transitions and acquireTime), the
//     conflict came from a write of ours whose answer was lost and the
//     renewal is retried; otherwise the term is lost (ErrLost).
//
// # Fencing tokens
//
// The token of a term is spec.leaseTransitions as its holder wrote it when
// taking the Lease: one above the record's transitions and above every
// token this process has seen, starting at 1 on creation. Every take is a
// conditional update, so within one Lease object tokens strictly increase
// across terms. A client-go elector increments the counter the same way,
// except when it re-acquires a Lease that still names its own identity
// (then the token repeats: give client-go candidates unique identities) and
// when it creates the Lease (it starts at 0).
//
// If someone deletes the Lease, the leader's next renewal fails with
// NotFound and it steps down; watchers log the deletion. A leader cut off
// from the API server learns nothing and claims until its deadline, so no
// candidate creates an absent Lease before it has seen it absent for a
// whole lease duration (and 2 %) on its own clock; the first election on a
// new Lease waits that long too. The candidate that
// creates it again continues above the highest token it has seen, so tokens
// keep increasing as long as that candidate is a sidecar that observed the
// old Lease. They go backwards when it is recreated by a client-go elector
// or by a sidecar started after the deletion; Holder.UID changes then, and
// consumers that store tokens should store the UID with them.
//
// # Planned operations: the line
//
// A switchover (election.Handoff), the release of a crashed process's
// candidacy (election.Reclaimer) and generation-ordered rollouts
// (election.Generations) need waiting candidates to be visible. Each
// waiting candidacy keeps one annotation on a second Lease object, the
// line, named after the election's Lease with LineSuffix ("<name>-candidates"):
// the key is CandidateKeyPrefix + a random per-process nonce, the value a
// JSON entry {"id", "gen", "seq", "ttl", "n"} (identity, published
// generation, join order, duration in seconds, renewal counter). The
// candidacy joins in Candidate, rewrites the entry at every Renew while it
// waits (a JSON patch that tests its last value, so a removed entry is
// ErrLost and candidates never conflict with each other), and removes it
// once it leads or resigns. An entry is live while this process has seen
// its value change within its duration on its own clock, as for the
// holder. Entries unchanged for 3 durations are removed by waiting
// candidates (again testing the value judged). The line's spec is unused;
// the election's Lease is never written by waiting candidates, so the
// holder's renewals never conflict with them. One object for the whole
// line, rather than one per candidate, keeps RBAC naming every object
// the sidecar touches. Its cost: every waiting candidate writes that one
// object about three times per lease duration and every candidate
// following it receives every write, which suits the handful of replicas
// an election has (tens, not thousands; annotations are limited to 256 KiB
// in all, about 2,000 entries).
//
//   - Switchover: HandOver checks that exactly one live entry names the
//     successor, then ends the term in one conditional update that writes
//     client-go's release record plus SuccessorAnnotation (the successor),
//     the released state's mark (transitions and renewTime, so a later
//     release by someone else is not mistaken for a reservation) and the
//     reservation's length (the lease duration). A leader-elector candidate
//     with another identity does not take that released state until it has
//     seen it for the reservation's length on its own clock; the successor
//     takes it at once, with the next token. A successor that never comes
//     costs at most one lease duration.
//   - Reclaim: every take and creation writes the process's nonce in
//     IncarnationAnnotation. Handle is "<nonce>:<identity>"; Reclaim releases
//     the Lease only if both the holder and the nonce match, and removes the
//     line entry of that nonce only if it names the identity. A live twin
//     started with the same identity has another nonce: nothing of it
//     matches.
//   - Generations: WaitNewer publishes the generation on the entry. A
//     waiting candidate with a published generation does not take a free
//     Lease while a live entry of a greater generation is in line (it never
//     needs to queue again, so WaitNewer never returns nil); the chosen
//     successor of a switchover is not held back. NewerSuccessor names the
//     first to join (lowest seq) among the live entries of the greatest
//     generation above the leader's.
//
// These bind leader-elector candidates only. A client-go elector on the
// same Lease ignores the line and the annotations: it takes a released
// Lease at once, reservation or not, and a generation means nothing to it.
// Mutual exclusion and increasing tokens hold between both kinds as before.
//
// When the line object is forbidden (RBAC granted before it existed), a
// candidacy warns once and campaigns without an entry: elections work as
// before, a switchover to it is refused with ErrNotInLine naming the
// line, and generations change nothing.
//
// # Requests and RBAC
//
// Reads and writes made while campaigning are bounded by the lease
// duration; renewals by the caller's context. RBAC, all in the Lease's
// namespace, resource leases of group coordination.k8s.io:
//
//   - the election's Lease (resourceNames: its name): get, list, watch,
//     update (list and watch select it by metadata.name, which is what lets
//     resourceNames match them);
//   - the line, "<name>-candidates" (resourceNames: that name): get, list,
//     watch, patch;
//   - create, which cannot be limited by name (the first candidate creates
//     each object).
//
// Nothing is deleted, and the election's Lease is never patched.
package lease
