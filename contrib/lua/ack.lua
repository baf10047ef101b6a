-- scaleno: acknowledge entries only while this consumer holds the lease.
-- KEYS[1] stream, KEYS[2] lease key; ARGV[1] token, ARGV[2] group, ARGV[3..] ids
-- Returns the number acknowledged, or an error "FENCED".
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease ' .. KEYS[2] .. ' is not held by this consumer')
end
return redis.call('XACK', KEYS[1], ARGV[2], unpack(ARGV, 3))
