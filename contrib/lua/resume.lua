-- scaleno: resume a halted partition.
-- KEYS[1] halt record, KEYS[2] partition stream, KEYS[3] dead-letter stream
-- ARGV[1] group, ARGV[2] "retry" | "skip", ARGV[3] expected halting id (skip),
-- ARGV[4..] fields of the dead-letter entry (skip).
-- retry: the halting message's delivery count is reset (so the poison
-- check starts afresh) and the halt removed; its owner retries it.
-- skip: the message goes to the DLQ and is acknowledged, the halt removed.
-- Returns {halting id, dlq id or false}, or false when not halted.
local id = redis.call('HGET', KEYS[1], 'id')
if not id then return false end
if ARGV[2] == 'retry' then
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
local newid = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[2], ARGV[1], id)
redis.call('DEL', KEYS[1])
return {id, newid}
