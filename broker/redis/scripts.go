package redis

import "github.com/redis/rueidis"

// The Lua scripts. rueidis runs them with EVALSHA and falls back to EVAL
// when Redis answers NOSCRIPT (after a restart, for instance). Every
// number they take is a decimal string; Lua prints whole numbers below
// 10^14 exactly, which bounds offsets and millisecond times comfortably.

// ensureEpoch is shared by the scripts that read or write a room's stream.
// It returns the room's epoch and offset, first starting a new epoch at
// offset 0 (and dropping the old stream) when the room has none or its
// epoch was started under another generation of the Redis server: after a
// failover or a restart its tail may be gone, so continuity is not proven.
const ensureEpoch = `
local function ensure(meta, log, gen, candidate, ttl)
  local m = redis.call('HMGET', meta, 'epoch', 'offset', 'gen')
  if m[1] and m[3] == gen then
    return m[1], tonumber(m[2])
  end
  redis.call('DEL', log)
  redis.call('HSET', meta, 'epoch', candidate, 'offset', 0, 'gen', gen)
  redis.call('PEXPIRE', meta, ttl)
  return candidate, 0
end
`

// publishScript stores and publishes one message.
//
// KEYS: meta, log, [idempotency key]
// ARGV: generation, candidate epoch, history TTL ms, history size, channel,
// idempotency TTL ms, from, origin, data
//
// It answers "<epoch>\n<offset>": the first publish's position when the
// idempotency key is known, else the new message's.
var publishScript = rueidis.NewLuaScript(ensureEpoch + `
if KEYS[3] then
  local first = redis.call('GET', KEYS[3])
  if first then return first end
end
local epoch, offset = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local t = redis.call('TIME')
local ts = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local env = '1\n' .. epoch .. '\n' .. offset .. '\n' .. ts .. '\n' .. #ARGV[7] .. '\n' .. #ARGV[8] .. '\n' .. ARGV[7] .. ARGV[8] .. ARGV[9]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], offset .. '-0', 'm', env)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local pos = epoch .. '\n' .. offset
if KEYS[3] then
  redis.call('SET', KEYS[3], pos, 'PX', ARGV[6])
end
redis.call('PUBLISH', ARGV[5], env)
return pos
`)

// positionScript answers "<epoch>\n<offset>", starting an epoch if needed.
//
// KEYS: meta, log
// ARGV: generation, candidate epoch, history TTL ms
var positionScript = rueidis.NewLuaScript(ensureEpoch + `
local epoch, offset = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return epoch .. '\n' .. offset
`)

// historyScript reads a room's position and the envelopes of its history
// after an offset, in one step. Only the last history-size offsets count as
// history: the stream is trimmed approximately (MAXLEN ~), which may keep
// a few more.
//
// KEYS: meta, log
// ARGV: generation, candidate epoch, history TTL ms, history size,
// expected epoch ("" for any), after, limit (0 for all), tail ("1": the
// last limit messages, newest first)
//
// When the room's epoch is not the expected one, "after" counts from the
// epoch's start. It answers {"<epoch>\n<offset>", {envelope, ...}}.
var historyScript = rueidis.NewLuaScript(ensureEpoch + `
local epoch, offset = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
local pos = epoch .. '\n' .. offset
local after = tonumber(ARGV[6])
if ARGV[5] ~= '' and ARGV[5] ~= epoch then after = 0 end
local first = math.max(after + 1, offset - tonumber(ARGV[4]) + 1)
local out = {}
if first <= offset then
  local limit = tonumber(ARGV[7])
  local entries
  if limit > 0 and ARGV[8] == '1' then
    entries = redis.call('XREVRANGE', KEYS[2], offset .. '-0', first .. '-0', 'COUNT', limit)
  elseif limit > 0 then
    entries = redis.call('XRANGE', KEYS[2], first .. '-0', offset .. '-0', 'COUNT', limit)
  else
    entries = redis.call('XRANGE', KEYS[2], first .. '-0', offset .. '-0')
  end
  for i, e in ipairs(entries) do out[i] = e[2][2] end
end
return {pos, out}
`)

// nowMillis is a Lua prelude: Redis's clock in Unix milliseconds, so that
// expiry times written by different instances agree.
const nowMillis = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// pruneExpired is a Lua prelude: a function that removes the members of a
// hash whose time in a sorted set is at most limit.
const pruneExpired = `
local function prune(hash, zset, limit)
  while true do
    local gone = redis.call('ZRANGEBYSCORE', zset, '-inf', limit, 'LIMIT', 0, 500)
    if #gone == 0 then return end
    redis.call('HDEL', hash, unpack(gone))
    redis.call('ZREM', zset, unpack(gone))
  end
end
`

// presenceLive is a Lua prelude: a function that tells whether a Broker
// incarnation (see Broker.incarnation) heartbeated within ttl ms, by
// Redis's clock, according to the liveness sorted set.
const presenceLive = `
local function alive(live, inc, ttl)
  local s = redis.call('ZSCORE', live, inc)
  return s ~= false and tonumber(s) > now - tonumber(ttl)
end
`

// presenceAddScript records (or rewrites) presence entries of one room and
// marks the incarnation that holds them live: an incarnation that adds
// entries is alive. It gives the room's key a fresh key TTL. It answers 1
// if the incarnation was live before, 0 if it had lapsed (or was never
// seen): readers may then have removed its entries, so the Broker writes
// them all again.
//
// KEYS: room presence hash, liveness sorted set
// ARGV: key TTL ms, presence TTL ms, incarnation, then pairs of session,
// "user\0instance\0incarnation"
var presenceAddScript = rueidis.NewLuaScript(nowMillis + presenceLive + `
local was = alive(KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[3])
if #ARGV > 3 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
if was then return 1 end
return 0
`)

// presenceScript answers a room's entries whose incarnation is live, as
// HGETALL does but with values "user\0instance", and removes the others
// from the room: their instance stopped heartbeating. It looks each
// incarnation up once.
//
// KEYS: room presence hash, liveness sorted set
// ARGV: presence TTL ms
var presenceScript = rueidis.NewLuaScript(nowMillis + presenceLive + `
local kv = redis.call('HGETALL', KEYS[1])
local live, out, gone = {}, {}, {}
for i = 1, #kv, 2 do
  local head, inc = string.match(kv[i + 1], '^(.*)%z(.*)$')
  local ok = false
  if inc then
    ok = live[inc]
    if ok == nil then
      ok = alive(KEYS[2], inc, ARGV[1])
      live[inc] = ok
    end
  end
  if ok then
    out[#out + 1] = kv[i]
    out[#out + 1] = head
  else
    gone[#gone + 1] = kv[i]
  end
end
for i = 1, #gone, 500 do
  redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 499, #gone)))
end
return out
`)

// heartbeatScript records an instance's info and heartbeat time, marks
// the heartbeating incarnation live, and drops the instances and
// incarnations not heard from within the TTL. Its cost does not depend on
// the presence the incarnation holds. It answers as presenceAddScript does:
// 1 if the incarnation was live before, else 0.
//
// KEYS: instances hash, heartbeats sorted set, liveness sorted set
// ARGV: instance id, info JSON, TTL ms, incarnation
var heartbeatScript = rueidis.NewLuaScript(nowMillis + pruneExpired + presenceLive + `
local was = alive(KEYS[3], ARGV[4], ARGV[3])
local limit = now - tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[4])
prune(KEYS[1], KEYS[2], limit)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', limit)
if was then return 1 end
return 0
`)

// instancesScript drops the instances not heard from within the TTL and
// answers the rest as HGETALL does.
//
// KEYS: instances hash, heartbeats sorted set
// ARGV: TTL ms
var instancesScript = rueidis.NewLuaScript(nowMillis + pruneExpired + `
prune(KEYS[1], KEYS[2], now - tonumber(ARGV[1]))
return redis.call('HGETALL', KEYS[1])
`)
