-- scaleno: resume a halted partition.
-- KEYS[1] halt record, KEYS[2] partition stream, KEYS[3] dead-letter stream
-- ARGV[1] group, ARGV[2] "retry" | "skip" | "skipped" | "done" | "probed",
-- ARGV[3] expected halting id (all but retry).
-- retry: the halting message's delivery count is reset (so the poison
-- check starts afresh) and the halt removed; its owner retries it.
-- skip: ARGV[4..] are the fields of its dead-letter entry: it goes to the
-- DLQ and is acknowledged, the halt removed.
-- skipped: as skip, with the dead-letter entry already added by the
-- caller (an entry with more fields than one Lua call can pass), ARGV[4]
-- its id.
-- done: the owner's probe handled it: it is acknowledged, the halt removed.
-- probed: the owner's probe failed again: ARGV[4..] field, value, ... update
-- the halt record.
-- Returns {halting id, dlq id or false}, or false when not halted.
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return false end
local op = ARGV[2]
if op == 'retry' then
  local p = redis.call('XPENDING', KEYS[2], ARGV[1], id, id, 1)
  if p[1] then
    redis.call('XCLAIM', KEYS[2], ARGV[1], p[1][2], 0, id, 'RETRYCOUNT', 0, 'JUSTID')
  end
  redis.call('DEL', KEYS[1])
  return {id, false}
end
if id ~= ARGV[3] then
  return redis.error_reply('CHANGED the partition now halts on ' .. id)
end
if op == 'probed' then
  for i = 4, #ARGV - 1, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  return {id, false}
end
local newid = false
if op == 'skip' then
  -- at most 3900 pairs: Lua passes no more values to one command, so the
  -- caller adds a larger entry itself and says 'skipped'
  newid = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))
elseif op == 'skipped' then
  newid = ARGV[4]
end
redis.call('XACK', KEYS[2], ARGV[1], id)
redis.call('DEL', KEYS[1])
return {id, newid}
