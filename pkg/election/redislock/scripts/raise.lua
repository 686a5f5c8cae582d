-- Raises the fencing counter to at least a term's token.
--
-- KEYS[1]  fencing counter
-- ARGV[1]  token
--
-- Returns the counter afterwards.
local token = tonumber(ARGV[1])
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
if counter < token then
  redis.call('SET', KEYS[1], token)
  return token
end
return counter
