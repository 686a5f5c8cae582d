-- Takes the lock if it is free and issues the term's fencing token.
--
-- KEYS[1]  lock key
-- KEYS[2]  fencing counter
-- KEYS[3]  events channel
-- KEYS[4]  when this node was first seen holding the election's state (ms, server clock)
-- ARGV[1]  value: identity and a fresh nonce
-- ARGV[2]  lock TTL in milliseconds
-- ARGV[3]  highest fencing token the client has seen anywhere
--
-- Returns {1, token} when ARGV[1] now holds the lock, {0, counter, ms} when
-- another value holds it (ms: until it expires), or {0, counter, ms, 1}
-- while the node warms up (ms: until it may grant).
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')

-- A node that lost its data (restarted without persistence, flushed) may
-- have forgotten a lock whose holder still believes it valid. It grants
-- nothing until one TTL has passed on its own clock since it noticed the
-- loss, by which time any lock it granted before has expired. The same
-- wait applies once when an election first uses a node.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = tonumber(redis.call('GET', KEYS[4]))
if not since then
  redis.call('SET', KEYS[4], now)
  since = now
end
local warm = since + tonumber(ARGV[2]) - now
if warm > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, counter, warm, 1}
end

local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  -- A retried request whose first reply was lost: the token was issued then.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, counter}
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, counter, redis.call('PTTL', KEYS[1])}
end
-- The counter never falls below a token the client saw elsewhere, so a
-- node that restarted empty cannot hand out an old token again.
local seen = tonumber(ARGV[3])
if seen > counter then
  redis.call('SET', KEYS[2], seen)
end
local token = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], 'acquired')
return {1, token}
