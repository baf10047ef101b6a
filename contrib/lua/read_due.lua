-- scaleno: deliver the due entries of a retry stage to one consumer.
-- A stage has a fixed delay, so its entries fall due in id order: an entry
-- is due when the time in its id plus the delay has passed.
-- KEYS[1] stage stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] delay ms,
-- ARGV[4] count.
-- Returns {1, XREADGROUP reply} or {0, ms until the next entry is due, or -1}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[3])
local last = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, ld
  for i = 1, #g - 1, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then ld = g[i + 1] end
  end
  if name == ARGV[1] then last = ld end
end
if not last then return redis.error_reply('NOGROUP no group ' .. ARGV[1] .. ' on ' .. KEYS[1]) end
local due = 0
if cutoff > 0 then
  due = #redis.call('XRANGE', KEYS[1], '(' .. last, string.format('%.0f', cutoff), 'COUNT', ARGV[4])
end
if due == 0 then
  local nxt = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
  if #nxt == 0 then return {0, -1} end
  local ms = tonumber(string.match(nxt[1][1], '^(%d+)-'))
  return {0, math.max(0, ms + tonumber(ARGV[3]) - now)}
end
return {1, redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', due,
  'STREAMS', KEYS[1], '>')}
