package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// The Lua scripts. They run with EVALSHA, and EVAL when Redis answers
// NOSCRIPT (after a restart, for instance). Every number they take is a
// decimal string; Lua prints whole numbers below 10^14 exactly, which
// bounds offsets and millisecond times comfortably.

// script is a Lua script. rueidis's own Lua type would do for one call,
// but its ExecMulti first loads the script on every node of a cluster, and
// retries that: one dead master holds up every pipelined batch (catch-up
// reads, presence rewrites) until the call's deadline, even of rooms on
// other shards.
type script struct {
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Exec runs the script once.
func (s *script) Exec(ctx context.Context, c rueidis.Client, keys, args []string) rueidis.RedisResult {
	r := c.Do(ctx, c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	if err, ok := rueidis.IsRedisErr(r.Error()); ok && err.IsNoScript() {
		r = c.Do(ctx, c.B().Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	}
	return r
}

// ExecMulti runs the script once per exec, pipelined (on a cluster, each
// to the node that serves its keys), and answers in order.
func (s *script) ExecMulti(ctx context.Context, c rueidis.Client, execs ...rueidis.LuaExec) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	res := c.DoMulti(ctx, cmds...)
	var again []int
	for i, r := range res {
		if err, ok := rueidis.IsRedisErr(r.Error()); ok && err.IsNoScript() {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		cmds = cmds[:0]
		for _, i := range again {
			e := execs[i]
			cmds = append(cmds, c.B().Eval().Script(s.src).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build())
		}
		for j, r := range c.DoMulti(ctx, cmds...) {
			res[again[j]] = r
		}
	}
	return res
}

// ensureEpoch is shared by the scripts that read or write a room's stream.
// It returns the room's epoch and offset, first starting a new epoch at
// offset 0 (and dropping the old stream) when the room has none or its
// epoch was started under another generation of the Redis server.
//
// The generation is the server's replication id (master_replid), which
// Redis draws anew when it starts and when a replica is promoted: after a
// restart or a failover a room's history may have lost its tail, so its
// epoch must not continue. The script reads it from the server it runs on
// (INFO replication), so the decision to start an epoch is made once per
// room and generation, by Redis, atomically with the publish or read that
// meets it first: no instance can continue an epoch on a server that
// started another, nor start a second one because it learned of the
// change later than another instance did. Without permission to run INFO
// (ACL) the generation is "unknown" and epochs survive failovers.
const ensureEpoch = `
local function generation()
  local info = redis.pcall('INFO', 'replication')
  if type(info) ~= 'string' then return 'unknown' end
  return string.match(info, 'master_replid:(%w+)') or 'unknown'
end
local function ensure(meta, log, candidate, ttl)
  local gen = generation()
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
// ARGV: candidate epoch, history TTL ms, history size, channel,
// idempotency TTL ms, from, origin, data
//
// It answers "<epoch>\n<offset>": the first publish's position when the
// idempotency key is known, else the new message's. The channel shares the
// room's hash slot, so SPUBLISH reaches the subscribers of the shard that
// owns the room (and, on one Redis, every subscriber).
var publishScript = newScript(ensureEpoch + `
if KEYS[3] then
  local first = redis.call('GET', KEYS[3])
  if first then return first end
end
local epoch, offset = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local t = redis.call('TIME')
local ts = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local env = '1\n' .. epoch .. '\n' .. offset .. '\n' .. ts .. '\n' .. #ARGV[6] .. '\n' .. #ARGV[7] .. '\n' .. ARGV[6] .. ARGV[7] .. ARGV[8]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'm', env)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local pos = epoch .. '\n' .. offset
if KEYS[3] then
  redis.call('SET', KEYS[3], pos, 'PX', ARGV[5])
end
redis.call('SPUBLISH', ARGV[4], env)
return pos
`)

// positionScript answers "<epoch>\n<offset>", starting an epoch if needed.
//
// KEYS: meta, log
// ARGV: candidate epoch, history TTL ms
var positionScript = newScript(ensureEpoch + `
local epoch, offset = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return epoch .. '\n' .. offset
`)

// historyScript reads a room's position and the envelopes of its history
// after an offset, in one step. Only the last history-size offsets count as
// history: the stream is trimmed approximately (MAXLEN ~), which may keep
// a few more.
//
// KEYS: meta, log
// ARGV: candidate epoch, history TTL ms, history size, expected epoch (""
// for any), after, limit (0 for all), tail ("1": the last limit messages,
// newest first)
//
// When the room's epoch is not the expected one, "after" counts from the
// epoch's start. It answers {"<epoch>\n<offset>", {envelope, ...}}.
var historyScript = newScript(ensureEpoch + `
local epoch, offset = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
local pos = epoch .. '\n' .. offset
local after = tonumber(ARGV[5])
if ARGV[4] ~= '' and ARGV[4] ~= epoch then after = 0 end
local first = math.max(after + 1, offset - tonumber(ARGV[3]) + 1)
local out = {}
if first <= offset then
  local limit = tonumber(ARGV[6])
  local entries
  if limit > 0 and ARGV[7] == '1' then
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

// keepAlive is a Lua prelude: a function that marks a Broker's
// incarnation live and returns it, or, if that incarnation is not live
// (it lapsed, or Redis lost it), marks the candidate incarnation live
// instead and returns that. An incarnation that was found dead is never
// marked live again, so a reader that finds an incarnation dead may
// delete its presence entries without racing a Broker that rewrites them:
// the rewritten entries carry the new incarnation.
const keepAlive = `
local function keep(live, inc, candidate, ttl)
  if not alive(live, inc, ttl) then inc = candidate end
  redis.call('ZADD', live, now, inc)
  return inc
end
`

// registerScript marks a new incarnation live, before any presence entry
// names it.
//
// KEYS: liveness sorted set
// ARGV: incarnation
var registerScript = newScript(nowMillis + `
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
`)

// touchScript keeps a Broker's incarnation live (see keepAlive) and
// answers the incarnation to use from now on.
//
// KEYS: liveness sorted set
// ARGV: presence TTL ms, incarnation, candidate incarnation
var touchScript = newScript(nowMillis + presenceLive + keepAlive + `
return keep(KEYS[1], ARGV[2], ARGV[3], ARGV[1])
`)

// presenceAddScript records (or rewrites) presence entries of one room and
// gives the room's key a fresh key TTL. It touches the room's key only, so
// it runs on the shard that owns the room; the incarnation the entries name
// is kept live separately (touchScript, heartbeatScript).
//
// KEYS: room presence hash
// ARGV: key TTL ms, then pairs of session, "user\0instance\0incarnation"
var presenceAddScript = newScript(`
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// liveScript answers, for each incarnation it is given, 1 if it is live
// and 0 if not.
//
// KEYS: liveness sorted set
// ARGV: presence TTL ms, incarnations
var liveScript = newScript(nowMillis + presenceLive + `
local out = {}
for i = 2, #ARGV do
  if alive(KEYS[1], ARGV[i], ARGV[1]) then out[i - 1] = 1 else out[i - 1] = 0 end
end
return out
`)

// pruneScript removes presence entries of dead incarnations from a room:
// each session given whose entry still names one of the dead incarnations
// (an entry rewritten since names a live one and stays).
//
// KEYS: room presence hash
// ARGV: the number n of dead incarnations, the n incarnations, then sessions
var pruneScript = newScript(`
local dead = {}
local n = tonumber(ARGV[1])
for i = 2, n + 1 do dead[ARGV[i]] = true end
local gone = 0
for i = n + 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local inc = string.match(v, '^.*%z(.*)$')
    if inc and dead[inc] then
      redis.call('HDEL', KEYS[1], ARGV[i])
      gone = gone + 1
    end
  end
end
return gone
`)

// heartbeatScript records an instance's info and heartbeat time, keeps
// the heartbeating Broker's incarnation live (see keepAlive), and drops
// the instances and incarnations not heard from within the TTL. Its cost
// does not depend on the presence the incarnation holds. It answers the
// incarnation to use from now on.
//
// KEYS: instances hash, heartbeats sorted set, liveness sorted set (all
// with one hash tag, so that they share a cluster slot)
// ARGV: instance id, info JSON, TTL ms, incarnation, candidate incarnation
var heartbeatScript = newScript(nowMillis + pruneExpired + presenceLive + keepAlive + `
local limit = now - tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
local inc = keep(KEYS[3], ARGV[4], ARGV[5], ARGV[3])
prune(KEYS[1], KEYS[2], limit)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', limit)
return inc
`)

// instancesScript drops the instances not heard from within the TTL and
// answers the rest as HGETALL does.
//
// KEYS: instances hash, heartbeats sorted set
// ARGV: TTL ms
var instancesScript = newScript(nowMillis + pruneExpired + `
prune(KEYS[1], KEYS[2], now - tonumber(ARGV[1]))
return redis.call('HGETALL', KEYS[1])
`)
