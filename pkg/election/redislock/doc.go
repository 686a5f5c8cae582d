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
// within milliseconds; <prefix><election>:line is a hash of the candidates
// waiting in line and <prefix><election>:next a switchover's reservation
// (see Operations below). Waiters also poll, at the latest every TTL/4 (at
// most 1s) and when the holder's lock is due to expire, so a lost message
// costs a poll interval at worst. A user restricted by ACL needs the keys and
// channels of the prefix (~leader-elector:* &leader-elector:*) and the
// commands EVAL, EVALSHA, SUBSCRIBE and PING, plus GET, SET, PEXPIRE, PTTL,
// DEL, PUBLISH, EXISTS, TIME, HGETALL, HGET, HSET, HDEL and HINCRBY, which
// the scripts call, and CONFIG GET or INFO to read the eviction policy.
//
// # Checks before a master takes part
//
// Before the first lock write on a master, again after any call to it got no
// answer (a restart, a failover, a broken connection), and at least every two
// TTLs, the backend checks it (checkNode), and Candidate checks every master:
//
//   - maxmemory-policy must be noeviction. volatile-* policies evict keys with
//     a TTL, which the lock always has, and allkeys-* any key: under memory
//     pressure the lock vanishes while its holder still leads, and a waiter
//     takes it. Such a master is refused with ErrEvicting (wrapping
//     election.ErrMisconfigured), naming it and its policy. The policy is read
//     with CONFIG GET, or INFO memory where CONFIG is denied; if both are
//     denied the master is refused (ErrAuth) unless Config.AssumeNoEviction
//     says the operator vouches for the policy. A policy changed at runtime
//     without a reconnect is noticed within two TTLs; a lock evicted in that
//     window is not detected.
//   - Every command the scripts and subscriptions use, on the election's own
//     keys and channel, must be allowed (check.lua asks redis.acl_check_cmd,
//     Redis 7.0+, which runs nothing). A missing one is reported by name
//     (ErrAuth, wrapping election.ErrDenied). Older servers cannot be asked;
//     there a denied command fails when first used.
//
// Candidate fails on any master that fails a check, so the engine is not
// ready and names the problem; a master that fails during a term is left out
// of it (its lock there is neither renewed nor taken back). Every script
// writes the lock last, so a command that fails midway (Lua scripts are not
// transactions) never leaves a lock behind; a round that fails after its
// lock writes releases them.
//
// # Operations: switchover, reclaim, generations
//
// The backend implements election.Handoff, election.Reclaimer and
// election.Generations. Redis has no queue, so each master keeps a line:
// the hash <prefix><election>:line, in which every waiting candidacy has a
// field named by its random 128-bit name (newMember; also in each of its
// lock values, and its Reclaimer handle) holding its order of arrival, an
// expiry on the server's clock, its generation and its identity. Each
// acquisition attempt refreshes it (at least every TTL/4), so a crashed
// waiter's entry is dead one TTL after its last attempt; dead entries are
// ignored and deleted. A leader has no entry.
//
// A switchover (handoff.lua) reserves the free lock for the successor's
// identity for one TTL in <prefix><election>:next, re-sequences those ahead
// of it behind it, deletes the lock and announces the release; acquire.lua
// grants the lock to no other identity while the reservation lives (a
// successor whose candidacy failed and started again still gets it), and
// the winner's commit consumes it (raise.lua: a partial round it gives back
// stays reserved for it). With Redlock it counts when done on a majority of masters
// (the successor must be in line on a majority); on a minority the outcome
// is unknown, as election.Handoff allows (see handoff.go). Reclaim deletes,
// on every master, only what names the handle: a lock acquired by that
// candidacy and its entry; never anything of another identity. Generations: acquire.lua refuses the free lock while a live
// candidacy of a greater generation is in line on that master.
//
// These keep the rules below: every script writes the lock last; the
// warm-up after data loss comes before a reservation; tokens are proposed
// and committed as for any acquisition.
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
// With Redlock, the leader keeps its term through the loss of a minority:
// once a restarted node's warm-up has passed, the leader's next renewal takes
// its lock back there (renew.lua). A lock taken back proves nothing about the
// time before, so it counts toward the renewal's majority only from the next
// renewal on. Masters restarted one at a time, each after the previous one's
// warm-up and one renewal, therefore never end the term; two restarted within
// one warm-up are a majority losing its data, and the term ends. Waiters
// meanwhile do not storm: a round that got some nodes but not a majority
// releases them without announcing it, and a waiter that sees another value
// holding a majority waits for its release or expiry as usual.
//
// # Fencing tokens
//
// The acquire script does not write the counter: it proposes
// max(counter, seen)+1, where seen is the highest token this process has
// read anywhere, so a round that fails leaves the counters alone. The term's
// token T is the highest proposal of the nodes that granted the lock. Before
// the term is used, the commit (raise.lua) raises the counter of every node
// that granted the round to T and announces the acquisition; it must succeed
// on a majority of nodes, all of them granting nodes, or the lock is released
// and the round retried. Every renewal raises every node it reaches to T
// again, including nodes that restarted empty. On one master this reduces to
// a counter that, while the lock exists and its holder has committed, equals
// its holder's token. Observers (Observe, a follower's view of the leader)
// read the lock and the counter together, so between a winner's grant and
// its commit, one round trip, they can name the new holder with the previous
// term's token; the token a holder publishes itself is always its own.
//
// Any two majorities share a node. Take the shared node n of an earlier
// term's committed set and a later term's granting set, the later term won
// after the earlier one ended. n held the earlier round's lock from its grant
// until the earlier term began, so it granted the later round either after
// that (its counter was ≥ T, so it proposed ≥ T+1, making the later token > T)
// or before the earlier grant, in which case the later round's lock on n
// had expired before the earlier term began, so the later round, which
// wins only within its validity (less than one TTL after it was sent), was
// won before the earlier term even began. Failed and partial rounds write no
// counter. Counting a node that did not grant the round would break this: it
// may have granted a competing round just before, whose token the earlier
// term then does not exceed on a majority
// (TestRedlockTokenOrderCountsOnlyGrantingNodes is that interleaving).
//
// The limit: the argument needs the shared node to keep its counter. A node
// that restarts empty (no persistence) forgets it; the next commit or renewal
// that reaches it raises it again, and seen carries tokens this process has
// observed. A token can still go backwards if nodes lose their data so that
// the later majority holds no node with the earlier counter and the winning
// process never read it. Run the masters with persistence (appendonly with
// fsync) if tokens must survive restarts; the same holds for a single master.
package redislock
