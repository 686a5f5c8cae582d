// Package bench measures leader-elector side by side with the alternatives
// on one machine in one run: graceful handover and crash failover of the
// sidecar on etcd and Redis, client-go's leaderelection with a LeaseLock,
// redsync and bsm/redislock; the steady-state cost of each; the pod label
// publish latency; a thousand elections on one etcd; and the planned
// operations (rolling updates with and without --generation, switchover,
// a sidecar restarted with --incarnation-file) on every backend whose
// sidecar reports "switchover": true. It writes the results as Markdown
// tables and an SVG chart (`make bench`; `-only-ops` prints the operations
// alone).
//
// Every server is real and local (etcd, redis-server, an envtest
// kube-apiserver), listens on 127.0.0.1 on a free port, and is stopped at the
// end. The run fails only when a measurement is broken (no samples, a trial
// that never elected a leader); targets are reported, not enforced, because
// timings on a shared machine are noisy.
package bench
