-- Deletes the lock if the caller holds it and, if asked, tells waiting
-- candidates; a candidacy that ends also leaves the line, and gives up a
-- handover's reservation for it.
--
-- KEYS[1]  lock key
-- KEYS[2]  events channel
-- KEYS[3]  the line (see acquire.lua)
-- KEYS[4]  the reservation for a handover's successor
-- ARGV[1]  value the caller acquired the lock with ('' when it holds none)
-- ARGV[2]  '1' to publish 'released' (a resignation or a lost lock); a
--          round that failed to reach a majority withdraws silently, so
--          waiters are not woken by rounds that never led
-- ARGV[3]  the candidacy's member name when it ends (it leaves the line);
--          '' for a round that failed (the candidacy waits on)
--
-- Returns 1 when the lock was deleted, 0 when ARGV[1] does not hold it.
local freed = false
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[3], ARGV[3])
  if redis.call('GET', KEYS[4]) == ARGV[3] then
    redis.call('DEL', KEYS[4])
    freed = true
  end
end
local held = ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1]
-- Delete first: a PUBLISH the user may not run must not keep the lock.
if held then
  redis.call('DEL', KEYS[1])
end
if (held and ARGV[2] == '1') or freed then
  redis.call('PUBLISH', KEYS[2], 'released')
end
if held then
  return 1
end
return 0
