-- A planned switchover: if the caller holds the lock and the chosen
-- successor is live in the line, reserves the free lock for the successor's
-- identity (acquire.lua refuses everybody else while the reservation
-- lives, and a later candidacy of the same candidate may use it), moves
-- every candidate that was ahead of it in line behind it, releases the
-- lock and announces the release.
--
-- KEYS[1]  lock key
-- KEYS[2]  the line (see acquire.lua)
-- KEYS[3]  the reservation for the successor
-- KEYS[4]  events channel
-- ARGV[1]  value the caller acquired the lock with
-- ARGV[2]  the successor's member name in the line
-- ARGV[3]  reservation TTL in milliseconds (the lock's TTL)
-- ARGV[4]  the successor's identity
--
-- Returns 1 when handed over, 0 when ARGV[1] does not hold the lock, -1
-- when the successor is not live in the line; the last two change nothing.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function parse(v)
  local s, exp, rest = string.match(v or '', '^(%d+) (%d+) (.*)$')
  return tonumber(s), tonumber(exp), rest
end
local target, texp, trest = parse(redis.call('HGET', KEYS[2], ARGV[2]))
if not target or texp <= now or string.match(trest, '^%-?%d+ (.*)$') ~= ARGV[4] then
  return -1
end
-- Those ahead of the successor queue again behind it, in their order.
local ahead = {}
local line = redis.call('HGETALL', KEYS[2])
for i = 1, #line, 2 do
  local s, exp, rest = parse(line[i + 1])
  if line[i] ~= '#seq' and s and exp > now and s < target then
    table.insert(ahead, {s, line[i], exp, rest})
  end
end
table.sort(ahead, function(a, b) return a[1] < b[1] end)
for _, e in ipairs(ahead) do
  local s = redis.call('HINCRBY', KEYS[2], '#seq', 1)
  redis.call('HSET', KEYS[2], e[2], string.format('%d %d %s', s, e[3], e[4]))
end
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[4], 'released')
return 1
