-- scaleno: partition lease with a fencing token.
-- KEYS[1] lease key, KEYS[2] epoch counter, KEYS[3] halt record
-- ARGV[1] "acquire" | "renew" | "release", ARGV[2] owner (acquire) or token,
-- ARGV[3] ttl in ms.
-- Returns {token or false, 1 when the partition is halted else 0}.
local cur = redis.call('GET', KEYS[1])
local halted = redis.call('EXISTS', KEYS[3])
if ARGV[1] == 'acquire' then
  if cur then return {false, halted} end
  local token = ARGV[2] .. '#' .. redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], token, 'PX', ARGV[3])
  return {token, halted}
end
if cur ~= ARGV[2] then return {false, halted} end
if ARGV[1] == 'renew' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return {cur, halted}
