-- Commits a won round's fencing token on a node that granted it: raises
-- the counter to at least the token and announces the acquisition.
--
-- KEYS[1]  fencing counter
-- KEYS[2]  events channel
-- ARGV[1]  token
--
-- Returns the counter afterwards.
local token = tonumber(ARGV[1])
redis.call('PUBLISH', KEYS[2], 'acquired')
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
if counter < token then
  redis.call('SET', KEYS[1], token)
  return token
end
return counter
