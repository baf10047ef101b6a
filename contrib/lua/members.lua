-- scaleno: heartbeat of the consumers sharing an order-critical queue's
-- partitions, so each can take its fair share of partition leases.
-- KEYS[1] sorted set; ARGV[1] this consumer, ARGV[2] ttl ms.
-- Returns the number of consumers seen within the ttl (this one included).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
