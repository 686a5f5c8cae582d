-- Deletes the lock if the caller holds it and, if asked, tells waiting
-- candidates; a candidacy that ends also leaves the line. (A switchover's
-- reservation names an identity, not a candidacy, so it stays: the same
-- candidate's next candidacy may take it.)
--
-- KEYS[1]  lock key
-- KEYS[2]  events channel
-- KEYS[3]  the line (see acquire.lua)
-- ARGV[1]  value the caller acquired the lock with ('' when it holds none)
-- ARGV[2]  '1' to publish 'released' (a resignation or a lost lock); a
--          round that failed to reach a majority withdraws silently, so
--          waiters are not woken by rounds that never led
-- ARGV[3]  the candidacy's member name when it ends (it leaves the line);
--          '' for a round that failed (the candidacy waits on)
--
-- Returns 1 when the lock was deleted, 0 when ARGV[1] does not hold it.
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[3], ARGV[3])
end
if ARGV[1] == '' or redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
-- Delete first: a PUBLISH the user may not run must not keep the lock.
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then
  redis.call('PUBLISH', KEYS[2], 'released')
end
return 1
