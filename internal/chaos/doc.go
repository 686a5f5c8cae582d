// Package chaos is the sidecar's fault-injection safety suite: it runs real
// sidecar processes against real backends (a three-member etcd cluster, one
// redis-server, three for Redlock, or a Lease on a real kube-apiserver),
// and checks what they recorded.
//
// A trial is a sequence of rounds, all derived from the trial's seed and
// shape (NewPlan): each round injects one fault or two overlapping ones
// (kills, pauses, partitions, delays, resets, backend restarts, stalled and
// failing outputs, and the operations of ops.go: a sidecar restarted in its
// pod, a twin with the same --id, a rolling update) against the leader of
// the moment, heals everything, waits for one agreed leader, then makes
// several graceful handovers (POST /resign, a switchover to a chosen
// candidate, SIGTERM and a restart), each waited for until the next term
// is agreed on and written in. The
// handovers make terms cheaply; every term is checked like the ones the
// faults end. The checks over the recorded histories:
//
//  1. no two processes claim leadership at overlapping instants;
//  2. fencing tokens strictly increase from term to term;
//  3. a token-fenced register, written by one client per sidecar with the
//     token that sidecar reported, never accepts a stale leader's write;
//  4. after each round's heal, exactly one leader is agreed on within a
//     bound; after each handover, a new term is agreed on;
//  5. a sidecar whose history output failed reports it in /status;
//  6. in readiness-gate trials (gate.go), no two pods have the gate
//     condition True at once in the API server's order of updates, and the
//     pods come to show the agreed leader's alone;
//  7. every new pod of a rollout becomes ready.
//
// It also measures what the operations cost: leadership changes per
// rollout and the time from a leader's crash to the next claim, printed in
// the Summary.
//
// The checker (Check) is a pure function of a Record, so it is tested on
// hand-made histories; the trial runner (RunTrial) needs testing.TB because
// the process and server helpers it drives report through it.
//
// # Adding a fault kind
//
//  1. Add a Kind constant (nemesis.go) with a comment saying what it does,
//     and append it to Kinds. Plans draw from Kinds, so a new kind changes
//     the plans that existing seeds map to: say so where runs are recorded
//     (docs/safety.md).
//  2. Add its entry to the table in nemeses: the backends it applies to
//     (nil: all), atSidecar if it hits the leader or a follower as
//     Fault.AtLeader says, plan (draws Hold and any parameter from the
//     plan's rng; only from rng, so seeds replay), resolve and, if the
//     election may legitimately take longer to recover, settleExtra.
//  3. Write resolve as a method of trial, func(tr *trial, f Fault, at
//     *targets) (inject, heal func()). It runs when the round starts, with
//     at.leader the agreed leader then: pick the target (at.signal for a
//     signal to a process, at.link for one sidecar, tr.cluster or tr.redis
//     for a server) and return the injection, run at f.Offset, and the
//     heal, run at f.Offset + f.Hold. Record what happened with tr.event
//     (it shows in a failed trial's timeline). Leave nothing behind that
//     trial.healAll, which runs after every round, does not undo: extend
//     healAll if the fault has state of its own.
//  4. If the checker must know of it (as Record.Pauses for SIGSTOP,
//     Record.RedisEmpty for Redis restarted empty, Run.Gaps for a failing
//     history), add that to the Record and teach Check, with a test on a
//     hand-made history (check_test.go).
//  5. Describe it in docs/safety.md's fault table.
package chaos
