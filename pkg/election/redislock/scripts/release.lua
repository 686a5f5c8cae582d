-- Deletes the lock if the caller holds it and, if asked, tells waiting
-- candidates.
--
-- KEYS[1]  lock key
-- KEYS[2]  events channel
-- ARGV[1]  value the caller acquired the lock with
-- ARGV[2]  '1' to publish 'released' (a resignation or a lost lock); a
--          round that failed to reach a majority withdraws silently, so
--          waiters are not woken by rounds that never led
--
-- Returns 1 when deleted, 0 when ARGV[1] does not hold it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
-- Delete first: a PUBLISH the user may not run must not keep the lock.
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then
  redis.call('PUBLISH', KEYS[2], 'released')
end
return 1
