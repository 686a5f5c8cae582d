// Package kube publishes this candidate's leadership on its own pod: a role
// label, an election label, an optional readiness-gate condition and events.
//
// What it does not guarantee: labels, conditions and events are advisory. A
// leader that is cut off from the API server cannot take its own label off,
// so for a while two pods may say "leader" in the eyes of a client that reads
// a stale copy; the publisher narrows that window by demoting any other pod
// of the same election before it labels itself leader, so once the new
// leader has published, at most one pod carries the leader label. Anything
// that needs safety must compare the fencing token, which the events carry.
//
// The publisher only reads the engine's status stream (election.Source) and
// never talks to a backend. It runs in its own goroutine, always acts on the
// latest status, and retries failed API calls with capped backoff, so a slow
// or absent API server delays nothing but the publishing itself.
//
// RBAC: see manifests/rbac.yaml (pods get/list/watch/patch, pods/status
// patch, core v1 events create/patch, all in the pod's own namespace).
//
// ReadWorkloadRevision, apart from publishing, reads the revision of the
// workload that controls a pod (the sidecar's --generation=auto); it needs
// get on pods, and on replicasets and controllerrevisions in group apps.
package kube
