-- scaleno: write a partition's halt record while holding its lease.
-- KEYS[1] halt record (hash), KEYS[2] lease key; ARGV[1] token,
-- ARGV[2..] field, value, ... Returns 1, or an error "FENCED".
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease ' .. KEYS[2] .. ' is not held by this consumer')
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
