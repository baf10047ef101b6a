-- scaleno: put a dead-lettered entry back on its origin stream.
-- KEYS[1] dead-letter stream, KEYS[2] origin stream; ARGV[1] DLQ id,
-- ARGV[2..] the original field, value, ... Returns the new id, or false
-- when the entry is no longer in the DLQ.
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
local newid = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], ARGV[1])
return newid
