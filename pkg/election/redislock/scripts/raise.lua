-- Commits a won round's fencing token on a node that granted it: raises
-- the counter to at least the token, takes the winner out of the line,
-- consumes a switchover's reservation for it, and announces the
-- acquisition.
--
-- KEYS[1]  fencing counter
-- KEYS[2]  events channel
-- KEYS[3]  the reservation for a switchover's successor (handoff.lua)
-- KEYS[4]  the line (see acquire.lua)
-- ARGV[1]  token
-- ARGV[2]  the winning candidacy's member name in the line
-- ARGV[3]  the winner's identity
--
-- Returns the counter afterwards.
--
-- Both happen here, at the commit, not at the grant: a round that got only
-- some nodes gives them back and must find them still reserved for it (or
-- a candidate that was not chosen could take them), and itself still in
-- line there (or a switchover to it would be refused).
local token = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HDEL', KEYS[4], ARGV[2])
end
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) == ARGV[3] then
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', KEYS[2], 'acquired')
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
if counter < token then
  redis.call('SET', KEYS[1], token)
  return token
end
return counter
