-- Lists the commands, with the election's keys and channel, that the
-- current user may not run but the election needs (Redis 7.0+: it uses
-- redis.acl_check_cmd, which checks without running anything).
--
-- KEYS[1]  lock key
-- KEYS[2]  fencing counter
-- KEYS[3]  events channel
-- KEYS[4]  when this node was first seen holding the election's state
-- KEYS[5]  the line of waiting candidates
-- KEYS[6]  the reservation for a handover's successor
--
-- Returns the denied commands' names, each once, in the order below; empty
-- when everything is allowed.
local lock, counter, events, since, line, reserved = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local needed = {
  {'eval', 'return 0', '0'},
  {'evalsha', '0000000000000000000000000000000000000000', '0'},
  {'subscribe', events},
  {'ping'},
  {'get', lock}, {'get', counter}, {'get', since}, {'get', reserved},
  {'set', lock, 'v', 'NX', 'PX', '1000'}, {'set', counter, '1'}, {'set', since, '1'},
  {'set', reserved, 'm', 'PX', '1000'},
  {'pexpire', lock, '1000'}, {'pexpire', line, '1000'},
  {'pttl', lock}, {'pttl', reserved},
  {'exists', lock}, {'exists', reserved},
  {'del', lock}, {'del', reserved},
  {'hgetall', line}, {'hget', line, 'm'}, {'hset', line, 'm', 'v'}, {'hdel', line, 'm'},
  {'hincrby', line, '#seq', '1'},
  {'publish', events, 'released'},
  {'time'},
}
local denied, seen = {}, {}
for _, cmd in ipairs(needed) do
  if not redis.acl_check_cmd(unpack(cmd)) and not seen[cmd[1]] then
    seen[cmd[1]] = true
    table.insert(denied, cmd[1])
  end
end
return denied
