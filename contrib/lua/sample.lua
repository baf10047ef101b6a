-- scaleno: sample one stream of a queue for the agent (scaleno(8) "agent").
-- KEYS: stream, halt key, then ndlq dead-letter streams, then retry stages.
-- ARGV: group, XRANGE cap, ndlq.
-- Returns {exists, group exists, XLEN, entries-added, lag|nil, pending,
-- entries-read|nil, last-delivered-id|nil, first id|nil, oldest pending
-- id|nil, oldest undelivered id|nil, fallback undelivered|nil, estimated,
-- halted, dlq length, retry length}. XINFO is allowed in scripts (not
-- marked noscript), so a stream costs one command and one instant.
local function idcmp(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return 0 end
  if #am ~= #bm then return #am < #bm and -1 or 1 end
  if am ~= bm then return am < bm and -1 or 1 end
  if #as ~= #bs then return #as < #bs and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end
local function field(t, name)
  for i = 1, #t - 1, 2 do if t[i] == name then return t[i + 1] end end
  return false
end
local function notstream(k, t)
  return redis.error_reply('WRONGTYPE key ' .. k .. ' holds a ' .. t .. ', not a stream')
end
local key, group = KEYS[1], ARGV[1]
local cap, ndlq = tonumber(ARGV[2]), tonumber(ARGV[3])
local halted = redis.call('EXISTS', KEYS[2])
local dlq, retry = 0, 0
for i = 3, #KEYS do
  local t = redis.call('TYPE', KEYS[i]).ok
  if t == 'stream' then
    local n = redis.call('XLEN', KEYS[i])
    if i < 3 + ndlq then dlq = dlq + n else retry = retry + n end
  elseif t ~= 'none' then return notstream(KEYS[i], t) end
end
local t = redis.call('TYPE', key).ok
if t == 'none' then
  return {0, 0, 0, 0, false, 0, false, false, false, false, false, false, 0, halted, dlq, retry}
end
if t ~= 'stream' then return notstream(key, t) end
local info = redis.call('XINFO', 'STREAM', key)
local xlen, added = field(info, 'length'), field(info, 'entries-added')
local fe = field(info, 'first-entry')
local first = fe and fe[1] or false
local g = false
for _, gi in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  if field(gi, 'name') == group then g = gi break end
end
-- No group yet (producers that only XADD): nothing was ever delivered, so every
-- entry is undelivered backlog and the oldest is the first (scaleno(8), scale from zero).
if not g then
  return {1, 0, xlen, added, xlen, 0, 0, false, first, false, first, false, 0, halted, dlq, retry}
end
local lag, pending = field(g, 'lag'), field(g, 'pending')
local eread, ld = field(g, 'entries-read'), field(g, 'last-delivered-id')
local pmin = false
if pending > 0 then pmin = redis.call('XPENDING', key, group)[2] end
local ufirst = false
local u = redis.pcall('XRANGE', key, '(' .. ld, '+', 'COUNT', 1)
if type(u) == 'table' and not u.err and u[1] then ufirst = u[1][1] end
local fb, est = false, 0
if not lag then
  if not first then fb = 0
  elseif idcmp(ld, first) < 0 then fb = xlen
  elseif not ufirst then fb = 0
  else
    fb = #redis.call('XRANGE', key, ufirst, '+', 'COUNT', cap)
    if fb >= cap then est = 1 end
  end
end
return {1, 1, xlen, added, lag, pending, eread, ld, first, pmin, ufirst, fb, est, halted, dlq, retry}
