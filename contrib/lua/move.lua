-- scaleno: move one stream entry atomically (retry stage, dead-letter queue).
-- KEYS[1] source stream, KEYS[2] destination stream, KEYS[3] lease key
-- ARGV[1] group, ARGV[2] id, ARGV[3] "1" to XDEL the source entry,
-- ARGV[4] fencing token ("" = no lease), ARGV[5..] field, value, ...
-- Returns the new id, or false when the entry was no longer pending
-- (another consumer handled it); an error "FENCED" when the lease is lost.
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[4] then
  return redis.error_reply('FENCED lease ' .. KEYS[3] .. ' is not held by this consumer')
end
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return false
end
local newid = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 5))
if ARGV[3] == '1' then
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return newid
