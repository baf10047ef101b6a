-- scaleno: publish one message, routed by a sticky key -> partition map (scaleno(8) "publish").
-- KEYS[1] the stream (with partitions > 1 the prefix of <stream>:<p>)
-- KEYS[2] the key's map entry <stream>:key:<key>   KEYS[3] the counter <stream>:rr
-- KEYS[4..3+partitions] (partitions > 1) the partition streams <stream>:0 ...
-- ARGV[1] group, ARGV[2] partitions, ARGV[3] key TTL in ms, ARGV[4] the key
-- ("" = keyless), ARGV[5..] field, value, ...   Returns {partition, entry id}.
--
-- The map is one string per producer key holding its partition, its expiry
-- reset to the TTL by every message of that key: Redis drops it exactly one
-- TTL after the key's last message, so the map holds only keys with recent
-- traffic, and such a key keeps its partition whatever the partition count
-- becomes (5 -> 7 moves no busy key). A key without a mapping (new, or idle
-- longer than the TTL) goes to the hash of the key modulo the current count:
-- no scan of the partitions, and new partitions get their share of new keys.
-- A mapping beyond the current count (the partitions shrank) is replaced,
-- since nobody reads those streams any more. Keyless messages take the
-- partitions in turn. Redis Cluster: every key of one queue must share a
-- hash slot (a hash tag in the stream name, e.g. {payments}); every key the
-- script may touch is declared in KEYS, the partition streams included.
local n = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if n == nil or n < 1 or n ~= math.floor(n) then
  return redis.error_reply('ERR scaleno publish: partitions must be a whole number >= 1')
end
if ttl == nil or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply('ERR scaleno publish: the key TTL must be a whole number of ms >= 1')
end
if #ARGV < 6 or #ARGV % 2 ~= 0 then
  return redis.error_reply('ERR scaleno publish: give field value pairs, at least one')
end
local p = 0
local stream = KEYS[1]
if n > 1 then
  if ARGV[4] == '' then
    p = (redis.call('INCR', KEYS[3]) - 1) % n
  else
    p = tonumber(redis.call('GET', KEYS[2]) or '')
    if p == nil or p >= n then
      p = tonumber(string.sub(redis.sha1hex(ARGV[4]), 1, 8), 16) % n
    end
    redis.call('SET', KEYS[2], p, 'PX', ttl)
  end
  stream = KEYS[4 + p]
  if stream == nil then
    return redis.error_reply('ERR scaleno publish: pass the ' .. n .. ' partition streams as KEYS[4..]')
  end
end
-- A stream that does not exist has no group yet, so no BUSYGROUP here; the
-- group starts at 0 so this very message is delivered.
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, ARGV[1], '0', 'MKSTREAM')
end
return {p, redis.call('XADD', stream, '*', unpack(ARGV, 5))}
