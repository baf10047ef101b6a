-- scaleno: remove consumers that hold nothing and have been idle too long.
-- Check and delete happen in one script, so a consumer that takes an entry
-- meanwhile is never deleted (XGROUP DELCONSUMER would orphan its entries).
-- KEYS[1] stream; ARGV[1] group, ARGV[2] this consumer (never removed),
-- ARGV[3] idle ms. Returns the number removed.
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #c - 1, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if name ~= ARGV[2] and pending == 0 and idle and idle > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
