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
// Backends (etcd, Redis) live in their own packages and implement Backend.
// Publishers (HTTP, Kubernetes) read a Source and never talk to a backend.
package election
