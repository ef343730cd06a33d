"""The Lua scripts behind `redis_slots.RedisSlots`: every change to the shared slot state is one script, so
Redis applies it atomically. Keys, under `workload.key_prefix`:

    leases  ZSET  query id -> lease expiry (ms, Redis clock)     queued and running entries alike
    info    HASH  query id -> {g group, u user, r replica, s q|r, gc/uc/tc limits, p priority}
    queue   ZSET  query id -> (1000 - priority) * 2^32 + arrival  the waiting order, best first
    count   HASH  r:<group>, u:<group>:<user>, t (all running), q:<group> (queued)
    seq     STRING the arrival counter
    kills:<replica>  LIST  kill requests for queries that replica runs

Two rules keep the counts sound whatever runs when:
- only the replica that holds an entry renews its lease (`SYNC`); admitting a waiting entry (`dispatch`)
  leaves its lease as it is, so a dead replica's entries expire `lease_seconds` after its last renewal even
  when another replica's release promotes them meanwhile;
- every script is idempotent for the same arguments, so the client may retry one whose reply was lost.

Kept free of I/O so the property tests drive the same text against a real Redis.
"""

from __future__ import annotations

PRELUDE = """
local LEASES, INFO, QUEUE, COUNT, SEQ = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function incr(field, by)
  local n = redis.call('HINCRBY', COUNT, field, by)
  if n <= 0 then redis.call('HDEL', COUNT, field) end
end
local function count(field)
  return tonumber(redis.call('HGET', COUNT, field) or '0')
end
local function count_running(e, by)
  incr('r:' .. e.g, by)
  incr('u:' .. e.g .. ':' .. e.u, by)
  incr('t', by)
end
local function drop(id)
  local raw = redis.call('HGET', INFO, id)
  if raw then
    local e = cjson.decode(raw)
    if e.s == 'r' then
      count_running(e, -1)
    else
      incr('q:' .. e.g, -1)
      redis.call('ZREM', QUEUE, id)
    end
    redis.call('HDEL', INFO, id)
  end
  redis.call('ZREM', LEASES, id)
end
local function purge(now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now)) do drop(id) end
end
local function queue(id, e, priority)
  e.s = 'q'
  redis.call('HSET', INFO, id, cjson.encode(e))
  redis.call('ZADD', QUEUE, (1000 - priority) * 4294967296 + redis.call('INCR', SEQ), id)
  incr('q:' .. e.g, 1)
end
local function dispatch()
  local admitted = 0
  for _, id in ipairs(redis.call('ZRANGE', QUEUE, 0, 999)) do
    local raw = redis.call('HGET', INFO, id)
    if not raw then
      redis.call('ZREM', QUEUE, id)
    else
      local e = cjson.decode(raw)
      if e.tc > 0 and count('t') >= e.tc then break end
      if count('r:' .. e.g) < e.gc and (e.uc == 0 or count('u:' .. e.g .. ':' .. e.u) < e.uc) then
        e.s = 'r'
        redis.call('HSET', INFO, id, cjson.encode(e))
        redis.call('ZREM', QUEUE, id)
        incr('q:' .. e.g, -1)
        count_running(e, 1)
        admitted = admitted + 1
      end
    end
  end
  return admitted
end
"""

# ARGV: id, info json, priority, max_queued, lease ms -> 'running' | 'queued' | 'full'
# An id already present (a retried call) answers its state without queueing it twice.
ENQUEUE = PRELUDE + """
local now, id, lease = now_ms(), ARGV[1], tonumber(ARGV[5])
purge(now)
local known = redis.call('HGET', INFO, id)
if known then
  if cjson.decode(known).s == 'r' then return 'running' end
  return 'queued'
end
local e = cjson.decode(ARGV[2])
queue(id, e, tonumber(ARGV[3]))
redis.call('ZADD', LEASES, now + lease, id)
dispatch()
if cjson.decode(redis.call('HGET', INFO, id)).s == 'r' then return 'running' end
if count('q:' .. e.g) > tonumber(ARGV[4]) then
  drop(id)
  return 'full'
end
return 'queued'
"""

# KEYS[6]: this replica's kill list. ARGV: lease ms, ids... -> {state per id (q|r|lost), kill requests}
SYNC = PRELUDE + """
local now, lease = now_ms(), tonumber(ARGV[1])
purge(now)
dispatch()
local states = {}
for i = 2, #ARGV do
  local raw = redis.call('HGET', INFO, ARGV[i])
  if raw then
    redis.call('ZADD', LEASES, 'XX', now + lease, ARGV[i])
    states[#states + 1] = cjson.decode(raw).s
  else
    states[#states + 1] = 'lost'
  end
end
local kills = redis.call('LRANGE', KEYS[6], 0, -1)
if #kills > 0 then redis.call('DEL', KEYS[6]) end
return {states, kills}
"""

# ARGV: id -> how many waiting queries it admitted
RELEASE = PRELUDE + """
local now = now_ms()
drop(ARGV[1])
purge(now)
return dispatch()
"""

# After an outage, a replica hands Redis what it runs and what waits, before it admits anything more through
# Redis. ARGV: lease ms, how many of the entries run, then (id, info json, priority) per entry: the running
# ones first (counted as running whatever the limits: they run already), then the waiting ones in their
# order. -> the state (q|r) of every entry after a dispatch.
RECOVER = PRELUDE + """
local now, lease, running = now_ms(), tonumber(ARGV[1]), tonumber(ARGV[2])
purge(now)
local ids = {}
for i = 3, #ARGV, 3 do
  local id, e = ARGV[i], cjson.decode(ARGV[i + 1])
  drop(id)
  if #ids < running then
    e.s = 'r'
    redis.call('HSET', INFO, id, cjson.encode(e))
    count_running(e, 1)
  else
    queue(id, e, tonumber(ARGV[i + 2]))
  end
  redis.call('ZADD', LEASES, now + lease, id)
  ids[#ids + 1] = id
end
dispatch()
local states = {}
for _, id in ipairs(ids) do states[#states + 1] = cjson.decode(redis.call('HGET', INFO, id)).s end
return states
"""

# -> every entry (after purging expired leases), as HGETALL pairs
SNAPSHOT = PRELUDE + """
purge(now_ms())
return redis.call('HGETALL', INFO)
"""

KEY_NAMES = ("leases", "info", "queue", "count", "seq")
