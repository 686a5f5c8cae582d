// Package redislock implements election.Backend with a Redis lock: on one
// master, or with the Redlock algorithm on an odd number (3 or more) of
// independent masters.
//
// What it does not guarantee: Redis expires keys by the server's wall clock,
// so a clock jump can end a lock early, and replication is asynchronous, so a
// failover to a replica can forget a lock that was granted. Redlock tolerates
// the loss of a minority of masters but assumes bounded clock drift (1% of the
// TTL plus 2ms is deducted from every validity). Prefer etcd where you can;
// consumers that must reject a stale leader compare the fencing token.
//
// Keys, under a prefix (default "leader-elector:") and scoped by namespace
// (Options.ElectionKey: <prefix><namespace>/<election>, written <election>
// below): <prefix><election> holds
// the leader's identity and a per-acquisition random nonce, so only the holder
// can renew or release it; <prefix><election>:token is the fencing counter;
// <prefix><election>:events is the pub/sub channel on which acquisitions and
// releases are announced, so a waiting candidate takes over a released lock
// within milliseconds. Waiters also poll, at the latest every TTL/4 (at most
// 1s) and when the holder's lock is due to expire, so a lost message costs a
// poll interval at worst. A user restricted by ACL needs the keys and channels
// of the prefix (~leader-elector:* &leader-elector:*) and the commands EVAL,
// EVALSHA, SUBSCRIBE and PING, plus GET, SET, INCR, PEXPIRE, PTTL, DEL,
// PUBLISH, EXISTS and TIME, which the scripts call.
//
// # Data loss
//
// A node that loses its data (restarted without persistence, flushed) forgets
// a lock whose holder may still be inside its validity. So the acquire script
// keeps <prefix><election>:since, the server time at which the node first saw
// the election, and grants nothing until one TTL has passed since then on the
// node's own clock, by which time any lock it granted before the loss has
// expired (Redlock's "delayed restart"). The first election on a fresh node
// waits one TTL too: the two cases look the same.
//
// # Fencing tokens
//
// On one master, the acquire script increments the counter only when SET NX
// succeeds, so while the lock exists the counter equals its holder's token.
//
// With Redlock, each node's counter may differ, and a plain per-node INCR
// would let a later majority hand out a smaller token. Instead:
//
//  1. The acquire script sets the node's counter to max(counter, seen)+1,
//     where seen is the highest token this process has read anywhere, and the
//     term's token T is the highest answer of the nodes that granted the lock.
//  2. Before the term is used, a majority of nodes must have a counter ≥ T
//     (committed): nodes that are behind, or did not answer, are raised to T.
//     If that fails the lock is released and the round retried. Every
//     renewal raises every node it reaches to T again, including nodes that
//     restarted empty.
//
// Any two majorities share a node. That shared node's counter was ≥ T when
// the earlier term was committed, counters never decrease, and so the later
// term's acquire answer on it is ≥ T+1, making its token > T. Failed and
// partial rounds only raise counters, which cannot hurt.
//
// The limit: the argument needs the shared node to keep its counter. A node
// that restarts empty (no persistence) forgets it; the next commit or renewal
// that reaches it raises it again, and seen carries tokens this process has
// observed. A token can still go backwards if nodes lose their data so that
// the later majority holds no node with the earlier counter and the winning
// process never read it. Run the masters with persistence (appendonly with
// fsync) if tokens must survive restarts; the same holds for a single master.
package redislock
