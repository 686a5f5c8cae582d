-- Deletes the lock if the caller holds it and tells waiting candidates.
--
-- KEYS[1]  lock key
-- KEYS[2]  events channel
-- ARGV[1]  value the caller acquired the lock with
--
-- Returns 1 when deleted (and published), 0 when ARGV[1] does not hold it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], 'released')
return 1
