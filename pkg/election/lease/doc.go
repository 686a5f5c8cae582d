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
// NotFound and it steps down; watchers log the deletion. The candidate that
// creates it again continues above the highest token it has seen, so tokens
// keep increasing as long as that candidate is a sidecar that observed the
// old Lease. They go backwards when it is recreated by a client-go elector
// or by a sidecar started after the deletion; Holder.UID changes then, and
// consumers that store tokens should store the UID with them.
//
// # Requests
//
// Reads and writes made while campaigning are bounded by the lease
// duration; renewals by the caller's context. RBAC needs leases get, list,
// watch and update (all can be limited to the one Lease with
// resourceNames, list and watch because they select by metadata.name) and
// create (which cannot be limited by name).
package lease
