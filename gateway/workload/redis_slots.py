"""Slots shared by every gateway replica through Redis (`workload.redis`).

Every change is one Lua script, so Redis applies it atomically; the scripts keep, under `key_prefix`:

    leases  ZSET  query id -> lease expiry (ms, Redis clock)     queued and running entries alike
    info    HASH  query id -> {g group, u user, r replica, s q|r, gc/uc/tc limits, p priority}
    queue   ZSET  query id -> (1000 - priority) * 2^32 + arrival  the waiting order, best first
    count   HASH  r:<group>, u:<group>:<user>, t (all running), q:<group> (queued)
    kills:<replica>  LIST  kill requests for queries that replica runs

Each replica renews the leases of its queries (`sync`, every `lease_seconds / 3`, every `poll_seconds` while
it has queries waiting). A replica that dies stops renewing; any script that runs after the expiry purges
its entries, so its slots return within `lease_seconds`. `sync` also admits waiting queries of any replica
in priority order (the owner learns it on its next sync), and a release admits at once.

Redis unreachable (or a script failing): the replica logs it once, counts
`gateway_workload_redis_errors_total`, sets `gateway_workload_redis_up` to 0 and admits with per-process
limits (`LocalSlots`, the same group limits counted in this process only) until Redis answers again, trying
again every `retry_seconds`. Queries waiting in Redis move to the local queue. Running queries keep running;
their Redis leases expire, so for at most one lease period after Redis returns the cluster-wide counts
miss them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.metrics import Metrics
from gateway.workload.model import MAX_PRIORITY
from gateway.workload.slots import (
    ClusterEntry,
    GroupCounts,
    LocalSlots,
    SlotPool,
    Ticket,
    TicketState,
    queue_full,
)

log = logging.getLogger("gateway.workload")

_PRELUDE = """
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
local function drop(id)
  local raw = redis.call('HGET', INFO, id)
  if raw then
    local e = cjson.decode(raw)
    if e.s == 'r' then
      incr('r:' .. e.g, -1)
      incr('u:' .. e.g .. ':' .. e.u, -1)
      incr('t', -1)
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
local function dispatch(now, lease)
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
        incr('r:' .. e.g, 1)
        incr('u:' .. e.g .. ':' .. e.u, 1)
        incr('t', 1)
        redis.call('ZADD', LEASES, now + lease, id)
        admitted = admitted + 1
      end
    end
  end
  return admitted
end
"""

# ARGV: id, info json, priority, max_queued, lease ms -> 'running' | 'queued' | 'full'
_ENQUEUE = _PRELUDE + """
local now, id, lease = now_ms(), ARGV[1], tonumber(ARGV[5])
purge(now)
local e = cjson.decode(ARGV[2])
local seq = redis.call('INCR', SEQ)
redis.call('HSET', INFO, id, ARGV[2])
redis.call('ZADD', QUEUE, (1000 - tonumber(ARGV[3])) * 4294967296 + seq, id)
incr('q:' .. e.g, 1)
redis.call('ZADD', LEASES, now + lease, id)
dispatch(now, lease)
if cjson.decode(redis.call('HGET', INFO, id)).s == 'r' then return 'running' end
if count('q:' .. e.g) > tonumber(ARGV[4]) then
  drop(id)
  return 'full'
end
return 'queued'
"""

# KEYS[6]: this replica's kill list. ARGV: lease ms, ids... -> {state per id (q|r|lost), kill requests}
_SYNC = _PRELUDE + """
local now, lease = now_ms(), tonumber(ARGV[1])
purge(now)
dispatch(now, lease)
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

# ARGV: id, lease ms -> how many waiting queries it admitted
_RELEASE = _PRELUDE + """
local now = now_ms()
drop(ARGV[1])
purge(now)
return dispatch(now, tonumber(ARGV[2]))
"""

# -> every entry (after purging expired leases), as HGETALL pairs
_SNAPSHOT = _PRELUDE + """
purge(now_ms())
return redis.call('HGETALL', INFO)
"""


class RedisSlots(SlotPool):
    def __init__(self, *, url: str, prefix: str, replica: str, lease_seconds: float, poll_seconds: float,
                 retry_seconds: float, metrics: Metrics, timeout_seconds: float = 1.0) -> None:
        self.replica = replica
        self.fallback = LocalSlots()
        self._client: Redis = Redis.from_url(url, socket_timeout=timeout_seconds,
                                             socket_connect_timeout=timeout_seconds, retry=Retry(NoBackoff(), 0))
        self._keys = [f"{prefix}{name}" for name in ("leases", "info", "queue", "count", "seq")]
        self._prefix = prefix
        self._lease_ms = int(lease_seconds * 1000)
        self._poll_seconds = poll_seconds
        self._heartbeat_seconds = lease_seconds / 3
        self._retry_seconds = retry_seconds
        self._metrics = metrics
        self._enqueue = self._client.register_script(_ENQUEUE)
        self._sync = self._client.register_script(_SYNC)
        self._release = self._client.register_script(_RELEASE)
        self._snapshot = self._client.register_script(_SNAPSHOT)
        self._enqueuing: set[str] = set()
        self._waiting: dict[str, Ticket] = {}
        self._running: dict[str, Ticket] = {}
        self._up = True
        self._down_until = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        metrics.workload_redis_up.set(1)

    # -- SlotPool ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._sync_forever(), name="workload-redis-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        held = list(self._running) + list(self._waiting)
        self._running.clear()
        self._waiting.clear()
        if held and self._up:
            try:
                async with asyncio.timeout(2):
                    for query_id in held:
                        await self._release(keys=self._keys, args=[query_id, self._lease_ms])
            except (RedisError, TimeoutError) as error:
                log.warning("could not give back %d Redis slots on shutdown (%s); their leases expire",
                            len(held), type(error).__name__)
        await self._client.aclose()

    async def acquire(self, ticket: Ticket) -> None:
        if time.monotonic() < self._down_until:
            await self._acquire_locally(ticket)
            return
        group = ticket.group
        info = json.dumps({"g": group.name, "u": ticket.user, "r": self.replica, "s": "q",
                           "gc": group.max_concurrency, "uc": group.max_concurrency_per_user or 0,
                           "tc": ticket.total_limit or 0, "p": group.priority})
        ticket.state = TicketState.QUEUED
        self._enqueuing.add(ticket.id)
        try:
            status = await self._enqueue(keys=self._keys, args=[
                ticket.id, info, min(group.priority, MAX_PRIORITY), group.max_queued, self._lease_ms])
        except RedisError as error:
            self._failed(error)
            if ticket.state is TicketState.DONE:
                await ticket.admitted  # raises: it was withdrawn meanwhile
            await self._acquire_locally(ticket)
            return
        finally:
            self._enqueuing.discard(ticket.id)
        self._succeeded()
        status = status.decode() if isinstance(status, bytes) else str(status)
        if ticket.state is TicketState.DONE:  # released while the script ran: give the entry back
            self._spawn(self._give_back(ticket.id))
        elif status == "full":
            ticket.state = TicketState.DONE
            raise queue_full(group)
        elif status == "running":
            self._running[ticket.id] = ticket
            ticket.mark_running(self)
        else:
            self._waiting[ticket.id] = ticket
            self._wake.set()
        try:
            await ticket.admitted
        except asyncio.CancelledError:
            self.release(ticket)
            raise

    def release(self, ticket: Ticket) -> None:
        if ticket.id in self._enqueuing:  # `acquire` gives the entry back when the script returns
            ticket.mark_withdrawn()
        elif self._waiting.pop(ticket.id, None) is not None:
            ticket.mark_withdrawn()
            self._spawn(self._give_back(ticket.id))
        elif self._running.pop(ticket.id, None) is not None:
            ticket.state = TicketState.DONE
            self._spawn(self._give_back(ticket.id))
        else:
            self.fallback.release(ticket)

    def counts(self) -> dict[str, GroupCounts]:
        """This replica's queries (cluster-wide numbers: `cluster()`)."""
        counts = dict(self.fallback.counts())
        for tickets, running in ((self._running, True), (self._waiting, False)):
            for ticket in tickets.values():
                name = ticket.group.name
                before = counts.get(name, GroupCounts())
                counts[name] = GroupCounts(before.running + running, before.queued + (not running))
        return counts

    # -- cluster-wide views and kills ----------------------------------------------------------------------

    async def cluster(self) -> list[ClusterEntry] | None:
        """Every queued and running query of every replica; None when Redis does not answer."""
        try:
            flat = await self._snapshot(keys=self._keys)
        except RedisError as error:
            self._failed(error)
            return None
        entries = []
        for key, raw in zip(flat[::2], flat[1::2], strict=True):
            info = json.loads(raw)
            state = "RUNNING" if info["s"] == "r" else "QUEUED"
            entries.append(ClusterEntry(key.decode(), info["g"], info["u"], info["r"], state))
        return entries

    async def send_kill(self, replica: str, query_id: str, message: str) -> None:
        """Ask `replica` to kill `query_id` (it reads the request on its next sync)."""
        key = f"{self._prefix}kills:{replica}"
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps({"query_id": query_id, "message": message}))
            pipe.expire(key, 60)
            await pipe.execute()

    # -- background ----------------------------------------------------------------------------------------

    async def _sync_forever(self) -> None:
        while True:
            interval = self._poll_seconds if self._waiting else self._heartbeat_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            if (self._waiting or self._running) and time.monotonic() >= self._down_until:
                await self._sync_once()

    async def _sync_once(self) -> None:
        ids = [*self._waiting, *self._running]
        try:
            states, kills = await self._sync(keys=[*self._keys, f"{self._prefix}kills:{self.replica}"],
                                             args=[self._lease_ms, *ids])
        except RedisError as error:
            self._failed(error)
            self._move_waiting_to_local()
            return
        self._succeeded()
        for query_id, raw_state in zip(ids, states, strict=True):
            state = raw_state.decode()
            if query_id in self._waiting and state == "r":
                ticket = self._waiting.pop(query_id)
                self._running[query_id] = ticket
                ticket.mark_running(self)
            elif query_id in self._waiting and state == "lost":
                log.warning("query %s lost its place in the Redis queue; queueing it locally", query_id)
                self.fallback.enqueue(self._waiting.pop(query_id), check_full=False)
            elif query_id in self._running and state == "lost":
                log.warning("query %s lost its Redis slot lease; it keeps running, uncounted", query_id)
                self._running.pop(query_id)
                self._metrics.workload_redis_errors.inc()
        for raw in kills:
            request = json.loads(raw)
            if self.on_kill is not None:
                self.on_kill(str(request["query_id"]), str(request["message"]))

    async def _give_back(self, query_id: str) -> None:
        try:
            admitted = await self._release(keys=self._keys, args=[query_id, self._lease_ms])
        except RedisError as error:
            self._failed(error)
            return
        if admitted and self._waiting:
            self._wake.set()

    async def _acquire_locally(self, ticket: Ticket) -> None:
        self._metrics.workload_local_admissions.inc()
        await self.fallback.acquire(ticket)

    def _move_waiting_to_local(self) -> None:
        for ticket in list(self._waiting.values()):
            del self._waiting[ticket.id]
            self.fallback.enqueue(ticket, check_full=False)

    def _failed(self, error: Exception) -> None:
        self._metrics.workload_redis_errors.inc()
        self._down_until = time.monotonic() + self._retry_seconds
        if self._up:
            self._up = False
            self._metrics.workload_redis_up.set(0)
            log.error("Redis for workload admission failed (%s: %s): admitting with per-process limits; "
                      "retrying every %.0fs", type(error).__name__, error, self._retry_seconds)

    def _succeeded(self) -> None:
        if not self._up:
            self._up = True
            self._metrics.workload_redis_up.set(1)
            log.warning("Redis for workload admission answers again: cluster-wide limits restored")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
