-- Extends the lock if the caller still holds it.
--
-- KEYS[1]  lock key
-- KEYS[2]  fencing counter
-- ARGV[1]  value the caller acquired the lock with
-- ARGV[2]  lock TTL in milliseconds
-- ARGV[3]  the caller's term token
--
-- Returns 1 when extended, 0 when ARGV[1] does not hold the lock.

-- Raise the counter to the term's token first, even where the lock is gone:
-- a node that restarted empty gets the token back (counters only ever grow,
-- so this is harmless when the caller is stale).
local token = tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[2]) or '0') < token then
  redis.call('SET', KEYS[2], token)
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
