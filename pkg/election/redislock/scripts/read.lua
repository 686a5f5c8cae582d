-- Reads who holds the lock.
--
-- KEYS[1]  lock key
-- KEYS[2]  fencing counter
--
-- Returns {value, counter, pttl}; value is '' and pttl negative when the
-- lock is free.
local value = redis.call('GET', KEYS[1]) or ''
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
return {value, counter, redis.call('PTTL', KEYS[1])}
