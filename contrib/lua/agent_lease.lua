-- scaleno: the agent's HA lease (scaleno(8) "agent").
-- KEYS[1] lease; ARGV[1] owner, ARGV[2] ttl ms. Taking a free lease and
-- renewing our own are one atomic step, so two agents never both see 1.
-- A ttl of 0 releases the lease if we hold it (compare-and-delete).
if ARGV[2] == '0' then
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
