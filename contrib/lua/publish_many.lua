-- scaleno: publish several messages in one call (`scaleno publish --stdin`, scaleno(8)
-- "publish"), each routed exactly as publish.lua routes one: the sticky key -> partition
-- map, hash(key) mod partitions for a new or idle key, the partitions in turn for a keyless
-- message. One call saves the per-call cost that dominates a bulk load.
-- KEYS[1] the stream (with partitions > 1 the prefix of <stream>:<p>), KEYS[2] the counter
-- <stream>:rr, KEYS[2 + i] message i's map entry <stream>:key:<key>
-- ARGV[1] group, ARGV[2] partitions, ARGV[3] key TTL in ms, ARGV[4] the message count m,
-- then per message: its key ("" = keyless), its number of field and value strings, those.
-- Returns {p1, id1, p2, id2, ...}; an idN that is an error reply means message N alone
-- was not added (the others were).
local n = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local m = tonumber(ARGV[4])
if n == nil or n < 1 or n ~= math.floor(n) then
  return redis.error_reply('ERR scaleno publish: partitions must be a whole number >= 1')
end
if ttl == nil or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply('ERR scaleno publish: the key TTL must be a whole number of ms >= 1')
end
if m == nil or m < 1 or #KEYS ~= m + 2 then
  return redis.error_reply('ERR scaleno publish: the message count does not match the keys')
end
local out, ready, a = {}, {}, 5
for i = 1, m do
  local key, nf = ARGV[a], tonumber(ARGV[a + 1])
  if key == nil or nf == nil or nf < 2 or nf % 2 ~= 0 or a + 1 + nf > #ARGV then
    return redis.error_reply('ERR scaleno publish: message ' .. i .. ' is malformed')
  end
  local p = 0
  local stream = KEYS[1]
  if n > 1 then
    if key == '' then
      p = (redis.call('INCR', KEYS[2]) - 1) % n
    else
      p = tonumber(redis.call('GET', KEYS[2 + i]) or '')
      if p == nil or p >= n then
        p = tonumber(string.sub(redis.sha1hex(key), 1, 8), 16) % n
      end
      redis.call('SET', KEYS[2 + i], p, 'PX', ttl)
    end
    stream = KEYS[1] .. ':' .. p
  end
  -- A new stream gets its group at 0 (publish.lua); checked once per stream per call.
  if not ready[stream] then
    if redis.call('EXISTS', stream) == 0 then
      redis.pcall('XGROUP', 'CREATE', stream, ARGV[1], '0', 'MKSTREAM')
    end
    ready[stream] = true
  end
  out[#out + 1] = p
  out[#out + 1] = redis.pcall('XADD', stream, '*', unpack(ARGV, a + 2, a + 1 + nf))
  a = a + 2 + nf
end
return out
