-- Takes the lock if it is free and proposes the term's fencing token, and
-- keeps the caller registered in the election's line while it waits. The
-- counter is not written here: the winner's commit (raise.lua) writes it
-- on the nodes that granted, so a round that never reaches a majority
-- leaves no trace on the counters.
--
-- KEYS[1]  lock key
-- KEYS[2]  fencing counter
-- KEYS[3]  when this node was first seen holding the election's state (ms, server clock)
-- KEYS[4]  the line: a hash of the waiting candidates (see below)
-- KEYS[5]  the identity a handover reserved the free lock for (handoff.lua)
-- ARGV[1]  value: identity, candidacy and a fresh nonce
-- ARGV[2]  lock TTL in milliseconds
-- ARGV[3]  highest fencing token the client has seen anywhere
-- ARGV[4]  the candidacy's member name in the line (32 hex digits)
-- ARGV[5]  the candidacy's generation (a decimal integer, 0 for none)
-- ARGV[6]  the candidate's identity
-- ARGV[7]  '1' to register only: refresh the line entry and return {2, counter}
--
-- The line: field <member> is "<seq> <expires> <generation> <identity>",
-- where seq is the order of arrival (from the field '#seq') and expires is
-- the server time (ms) after which the entry is dead unless refreshed. A
-- waiting candidate refreshes it with every attempt (at least every TTL/4);
-- dead entries are ignored and deleted by whoever meets them.
--
-- Returns {1, token} when ARGV[1] now holds the lock (token: max(counter,
-- ARGV[3]) + 1); otherwise {0, counter, ms, why, holder}: why 0: another
-- value holds it (holder; ms until it expires); 1: the node warms up (ms
-- until it may grant); 2: a handover reserved it for another candidate (ms
-- until the reservation expires); 3: a live candidate of a newer generation
-- is in line (ms 0).
--
-- The lock write comes last: a command that fails (an ACL denial) aborts
-- the script before it, so it never leaves a lock behind.
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local member, gen = ARGV[4], tonumber(ARGV[5])

-- Read the line: this candidacy's place, and whether a live candidate of a
-- newer generation waits.
local seq, newer = nil, false
local line = redis.call('HGETALL', KEYS[4])
for i = 1, #line, 2 do
  local f, v = line[i], line[i + 1]
  if f ~= '#seq' then
    local s, exp, g = string.match(v, '^(%d+) (%d+) (%-?%d+) ')
    if not s or tonumber(exp) <= now then
      redis.call('HDEL', KEYS[4], f)
    elseif f == member then
      seq = s
    elseif tonumber(g) > gen then
      newer = true
    end
  end
end
local function register()
  if not seq then
    seq = redis.call('HINCRBY', KEYS[4], '#seq', 1)
  end
  redis.call('HSET', KEYS[4], member, string.format('%d %d %s %s', seq, now + ttl, ARGV[5], ARGV[6]))
  -- Outlives every live entry; the hash goes once nobody waits.
  redis.call('PEXPIRE', KEYS[4], 2 * ttl)
end
if ARGV[7] == '1' then
  register()
  return {2, counter}
end

-- A node that lost its data (restarted without persistence, flushed) may
-- have forgotten a lock whose holder still believes it valid. It grants
-- nothing until one TTL has passed on its own clock since it noticed the
-- loss, by which time any lock it granted before has expired. The same
-- wait applies once when an election first uses a node.
local since = tonumber(redis.call('GET', KEYS[3]))
if not since then
  redis.call('SET', KEYS[3], now)
  since = now
end
local warm = since + ttl - now
if warm > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  register()
  return {0, counter, warm, 1, ''}
end

-- The proposal never falls below a token the client saw elsewhere, so a
-- node that restarted empty cannot hand out an old token again.
local token = math.max(counter, tonumber(ARGV[3])) + 1
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  -- A retried request whose first reply was lost.
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, token}
end
if current then
  register()
  return {0, counter, redis.call('PTTL', KEYS[1]), 0, current}
end
-- A handover chose the next leader: nobody else may take the free lock
-- until the reservation expires; the chosen one (any candidacy of that
-- identity: its candidacy may have restarted meanwhile) takes it, and its
-- commit (raise.lua) consumes the reservation.
local reserved = redis.call('GET', KEYS[5])
if reserved and reserved ~= ARGV[6] then
  register()
  return {0, counter, redis.call('PTTL', KEYS[5]), 2, ''}
end
-- A rolling update moves leadership once: while a candidate of a newer
-- generation waits, older ones leave the lock to it.
if not reserved and newer then
  register()
  return {0, counter, 0, 3, ''}
end
-- Granted. The caller stays in line until its commit (raise.lua): this
-- round may yet fail to reach a majority.
-- Last: the lock is free (checked above, and the script runs alone), so
-- this SET succeeds.
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl)
return {1, token}
