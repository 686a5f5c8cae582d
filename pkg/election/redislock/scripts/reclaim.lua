-- Releases what a crashed earlier process of this candidate left behind,
-- named by its candidacy's member name: the lock if that candidacy holds
-- it, and its entry in the line. It removes nothing else, and nothing at
-- all if either names another identity. (A switchover's reservation names
-- the identity, which lives on in the restarted process: it stays.)
--
-- KEYS[1]  lock key
-- KEYS[2]  the line (see acquire.lua)
-- KEYS[3]  events channel
-- ARGV[1]  the earlier candidacy's member name
-- ARGV[2]  this candidate's identity
--
-- Returns {lock, entry}, each 1 if deleted and 0 if there was none; or
-- {-1, why} when something of that candidacy names another identity (then
-- nothing is deleted).
local dropLock = false
local current = redis.call('GET', KEYS[1])
if current then
  local ok, v = pcall(cjson.decode, current)
  if ok and type(v) == 'table' and v.cand == ARGV[1] then
    if v.id ~= ARGV[2] then
      return {-1, 'the lock of that candidacy holds identity ' .. tostring(v.id)}
    end
    dropLock = true
  end
end
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if entry then
  local id = string.match(entry, '^%d+ %d+ %-?%d+ (.*)$')
  if id ~= ARGV[2] then
    return {-1, 'the line entry of that candidacy names identity ' .. tostring(id)}
  end
  redis.call('HDEL', KEYS[2], ARGV[1])
end
if dropLock then
  redis.call('DEL', KEYS[1])
end
-- Wake the waiters: the lock may be free, or free for them now that the
-- entry (perhaps of a newer generation) is gone.
if dropLock or entry then
  redis.call('PUBLISH', KEYS[3], 'released')
end
return {dropLock and 1 or 0, entry and 1 or 0}
