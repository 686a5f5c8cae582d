-- Extends the lock if the caller still holds it, or takes it back on a
-- node that lost it (restarted empty) once the node's warm-up has passed.
--
-- KEYS[1]  lock key
-- KEYS[2]  fencing counter
-- KEYS[3]  when this node was first seen holding the election's state (ms, server clock)
-- KEYS[4]  the reservation for a handover's successor (handoff.lua)
-- ARGV[1]  value the caller acquired the lock with
-- ARGV[2]  lock TTL in milliseconds
-- ARGV[3]  the caller's term token
-- ARGV[4]  '1' if the lock may be taken back where it is missing
--
-- Returns 1 when extended, 2 when taken back, 0 when ARGV[1] does not hold
-- the lock. The lock write comes last, so a command that fails (an ACL
-- denial) leaves no lock behind.

-- Raise the counter to the term's token first, even where the lock is gone:
-- a node that restarted empty gets the token back (counters only ever grow,
-- so this is harmless when the caller is stale).
local token = tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') < token then
  redis.call('SET', KEYS[2], token)
end
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current or ARGV[4] ~= '1' then
  return 0
end
-- A handover released it here for a chosen successor: a renewal that was
-- already on its way must not take it back.
if redis.call('EXISTS', KEYS[4]) == 1 then
  return 0
end

-- The lock is missing. Taking it back is an acquisition like any other on
-- this node, so it waits for the node's warm-up (see acquire.lua): until
-- then the node may have forgotten another holder's lock. Counting it
-- toward the caller's majority is then as safe as a grant: no other value
-- holds it at this moment.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = tonumber(redis.call('GET', KEYS[3]))
if not since then
  redis.call('SET', KEYS[3], now)
  return 0
end
if since + tonumber(ARGV[2]) > now then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return 2
