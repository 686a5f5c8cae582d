-- Reads the lock, the reservation and the live candidates in line.
--
-- KEYS[1]  lock key
-- KEYS[2]  the line (see acquire.lua)
-- KEYS[3]  the reservation for a handover's successor
--
-- Returns {value, reserved, member1, entry1, member2, entry2, ...}: value
-- and reserved are '' when absent; entries are "<seq> <expires>
-- <generation> <identity>", live ones only, in no particular order.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[3]) or ''}
local line = redis.call('HGETALL', KEYS[2])
for i = 1, #line, 2 do
  local exp = string.match(line[i + 1], '^%d+ (%d+) ')
  if line[i] ~= '#seq' and exp and tonumber(exp) > now then
    table.insert(out, line[i])
    table.insert(out, line[i + 1])
  end
end
return out
