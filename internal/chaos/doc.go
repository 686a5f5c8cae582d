// Package chaos is the sidecar's fault-injection safety suite: it runs real
// sidecar processes against real backends (a three-member etcd cluster, one
// redis-server, or three for Redlock), injects faults chosen at random from a
// seed (kills, pauses, partitions, delays, resets, backend restarts, and
// the operations of ops.go: a sidecar restarted in its pod, a twin with the
// same --id, a rolling update), heals them, and checks the recorded
// histories:
//
//  1. no two processes claim leadership at overlapping instants;
//  2. fencing tokens strictly increase from term to term;
//  3. a token-fenced register, written by one client per sidecar with the
//     token that sidecar reported, never accepts a stale leader's write;
//  4. after the faults heal, exactly one leader is agreed on within a bound;
//  5. in readiness-gate trials (gate.go), no two pods have the gate
//     condition True at once in the API server's order of updates, and the
//     pods come to show the agreed leader's alone.
//
// It also measures what the operations cost: leadership changes per
// rollout and the time from a leader's crash to the next claim, printed in
// the Summary.
//
// The checker (Check) is a pure function of a Record, so it is tested on
// hand-made histories; the trial runner (RunTrial) needs testing.TB because
// the process and server helpers it drives report through it.
package chaos
