"""The result cache: an in-process tier bounded by bytes, a Redis tier shared by replicas, and coalescing of
identical queries already running.

Tier 1 (cachetools TLRU): per-entry TTL, evicts least recently used beyond `max_bytes`.
Tier 2 (Redis, optional): entries encoded by `codec` (compressed), with the same TTL; a tier-2 hit fills
tier 1. Redis failures are logged and counted, and the cache carries on with tier 1 only.
Coalescing: the first query for a key leads; identical queries arriving while it runs wait for its result
instead of running again. A waiting follower that is cancelled leaves the leader alone. A leader that fails
hands its followers its error when the error is the statement's own (the same SQL fails the same way), else
lets them run for themselves, all at once. A leader that stalls — its backend work done, waiting for its
client to read on — releases them too (`Leader.stalled`).
Purge: everything, or the entries that read a given table (each entry remembers its tables). With Redis,
a purge is also published to every replica, which drops the same entries from its in-process tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cachetools import TLRUCache
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from gateway.cache.codec import decode_result, encode_result
from gateway.errors import USER_ERROR, GatewayError
from gateway.metrics import Metrics
from gateway.relations import Column, Row

log = logging.getLogger("gateway.cache")

REDIS_TIMEOUT_SECONDS = 0.5
REDIS_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class CachedResult:
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    size_bytes: int
    expires_at: float  # time.time()
    tables: tuple[str, ...]


# Failures that say nothing about the statement: the same SQL may well succeed for the next query.
_CIRCUMSTANTIAL = frozenset({"USER_CANCELED", "ABANDONED_QUERY", "ADMINISTRATIVELY_KILLED"})


def is_deterministic_failure(error: GatewayError) -> bool:
    """The statement's own error (a division by zero, a value out of range): an identical query would fail
    the same way. Resource limits, cancellations, backend and gateway faults are not."""
    return error.error.type == USER_ERROR and error.error_name not in _CIRCUMSTANTIAL


def estimate_bytes(rows: Sequence[Row]) -> int:
    """A cheap size estimate (sampled), for the byte bounds; exact sizes would cost more than they save."""
    if not rows:
        return 64
    sample = rows[:: max(1, len(rows) // 32)]
    per_row = sum(sum(len(str(v)) + 8 for v in row) + 56 for row in sample) / len(sample)
    return int(per_row * len(rows)) + 64


class Leader:
    """The query running for a key. `busy` while it plans, queues, or works on its backend; otherwise it waits
    for its own client to read on, and followers stop waiting for it once that lasts too long."""

    def __init__(self) -> None:
        self.done: asyncio.Future[CachedResult | GatewayError | None] = asyncio.get_running_loop().create_future()
        self.followers = 0
        self.busy = True
        self.idle_since = time.monotonic()

    def working(self, busy: bool) -> None:
        self.busy = busy
        if not busy:
            self.idle_since = time.monotonic()

    def stalled(self, seconds: float) -> bool:
        return not self.busy and time.monotonic() - self.idle_since > seconds


class ResultCache:
    def __init__(self, *, max_bytes: int, max_entry_bytes: int, metrics: Metrics, redis_url: str | None = None,
                 prefix: str = "gateway:cache:") -> None:
        self.max_entry_bytes = max_entry_bytes
        self._metrics = metrics
        self._local: TLRUCache[str, CachedResult] = TLRUCache(
            maxsize=max_bytes, ttu=lambda _key, value, _now: value.expires_at, timer=time.time,
            getsizeof=lambda value: value.size_bytes)
        self._prefix = prefix
        self._redis = aioredis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                        socket_connect_timeout=REDIS_TIMEOUT_SECONDS) if redis_url else None
        self._redis_down_until = 0.0
        self._leaders: dict[str, Leader] = {}
        self._metrics.cache_bytes.set_function(lambda: float(self._local.currsize))
        # Bound once (exposed as 0 from the start): `labels()` on every lookup costs more than the lookup.
        self._hits_local = metrics.cache_lookups.labels("hit", "local")
        self._hits_shared = metrics.cache_lookups.labels("hit", "redis")
        self._misses = metrics.cache_lookups.labels("miss", "")
        self._listener: asyncio.Task[None] | None = None
        self._channel = prefix + "purge"

    async def start(self) -> None:
        """Listen for purges made on other replicas (with Redis)."""
        if self._redis is not None:
            self._listener = asyncio.create_task(self._listen_for_purges(), name="cache-purge-listener")

    async def _listen_for_purges(self) -> None:
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            table = data.decode() if isinstance(data, bytes) else str(data)
                            self._purge_local(table or None)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as error:
                self._redis_failed(error)
                await asyncio.sleep(REDIS_RETRY_SECONDS)

    # -- lookups ---------------------------------------------------------------------------------------------

    async def get(self, key: str) -> CachedResult | None:
        entry = self.get_local(key)
        if entry is not None:
            return entry
        entry = await self._get_shared(key)
        if entry is not None:
            self._hits_shared.inc()
            self._store_local(key, entry)
            return entry
        self._misses.inc()
        return None

    def get_local(self, key: str) -> CachedResult | None:
        """The in-process tier only (a miss here is not counted: `get` goes on to Redis and counts it)."""
        entry = self._local.get(key)
        if entry is not None:
            self._hits_local.inc()
        return entry

    def leader_for(self, key: str) -> Leader | None:
        """The running query identical to `key`, if any (to wait for instead of running again)."""
        return self._leaders.get(key)

    async def follow(self, leader: Leader, *, stall_seconds: float) -> CachedResult | GatewayError | None:
        """The leader's result, or its error when the error is the statement's own; None when the leader
        failed otherwise, was cancelled or stalled (then run yourself). Cancelling the follower does not
        cancel the leader."""
        leader.followers += 1
        self._metrics.cache_coalesced.inc()
        check = min(0.25, stall_seconds / 4)
        while not leader.done.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(leader.done), timeout=check)
            if not leader.done.done() and leader.stalled(stall_seconds):
                self._metrics.cache_coalesce_released.labels("stalled").inc()
                return None
        outcome = leader.done.result()
        if isinstance(outcome, GatewayError) and not is_deterministic_failure(outcome):
            self._metrics.cache_coalesce_released.labels("failed").inc()
            return None
        return outcome

    def lead(self, key: str) -> Leader:
        leader = Leader()
        self._leaders[key] = leader
        return leader

    def finish_leading(self, key: str, leader: Leader, result: CachedResult | GatewayError | None) -> None:
        if self._leaders.get(key) is leader:
            del self._leaders[key]
        if not leader.done.done():
            leader.done.set_result(result)

    # -- storing -----------------------------------------------------------------------------------------------

    async def put(self, key: str, *, columns: tuple[Column, ...], rows: Sequence[Row], ttl_seconds: float,
                  tables: tuple[str, ...]) -> CachedResult | None:
        """Cache a complete result; None when it is too large to keep."""
        size = estimate_bytes(rows)
        if size > self.max_entry_bytes or ttl_seconds <= 0:
            self._metrics.cache_rejected.inc()
            return None
        entry = CachedResult(columns, tuple(rows), size, time.time() + ttl_seconds, tables)
        self._store_local(key, entry)
        await self._put_shared(key, entry, ttl_seconds)
        return entry

    def _store_local(self, key: str, entry: CachedResult) -> None:
        if entry.size_bytes > self._local.maxsize:
            return
        before = len(self._local)
        self._local[key] = entry
        evicted = before + 1 - len(self._local)
        if evicted > 0:
            self._metrics.cache_evictions.inc(evicted)

    # -- invalidation ------------------------------------------------------------------------------------------

    async def purge(self, table: str | None = None) -> int:
        """Drop every entry, or those that read `table` (catalog.schema.table); how many were dropped here
        (Redis entries are dropped too, counted once)."""
        count = self._purge_local(table)
        count += await self._purge_shared(table)
        self._metrics.cache_purged.inc(count)
        return count

    def _purge_local(self, table: str | None) -> int:
        if table is None:
            count = len(self._local)
            self._local.clear()
            return count
        doomed = [k for k, v in list(self._local.items()) if table in v.tables]
        for key in doomed:
            self._local.pop(key, None)
        return len(doomed)

    # -- Redis tier --------------------------------------------------------------------------------------------

    def _redis_available(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, error: Exception) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        self._metrics.cache_redis_errors.inc()
        log.warning("result cache: Redis unavailable (%s); using the in-process tier only for %.0fs",
                    type(error).__name__, REDIS_RETRY_SECONDS)

    async def _get_shared(self, key: str) -> CachedResult | None:
        if not self._redis_available():
            return None
        assert self._redis is not None
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(self._prefix + key)
            pipe.pttl(self._prefix + key)
            pipe.smembers(self._prefix + "tables:" + key)
            blob, ttl, tables = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            self._redis_failed(error)
            return None
        if blob is None or ttl is None or ttl <= 0:
            return None
        try:
            columns, rows = decode_result(blob)
        except (ValueError, KeyError, TypeError):
            log.warning("result cache: dropped an unreadable Redis entry")
            return None
        return CachedResult(columns, tuple(rows), estimate_bytes(rows), time.time() + ttl / 1000,
                            tuple(sorted(t.decode() for t in tables)))

    async def _put_shared(self, key: str, entry: CachedResult, ttl_seconds: float) -> None:
        if not self._redis_available():
            return
        assert self._redis is not None
        blob = encode_result(entry.columns, entry.rows)
        if len(blob) > self.max_entry_bytes:
            return
        milliseconds = max(1, int(ttl_seconds * 1000))
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self._prefix + key, blob, px=milliseconds)
            if entry.tables:
                pipe.sadd(self._prefix + "tables:" + key, *entry.tables)
                pipe.pexpire(self._prefix + "tables:" + key, milliseconds)
            for table in entry.tables:
                pipe.sadd(self._prefix + "table:" + table, key)
            await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            self._redis_failed(error)

    async def _purge_shared(self, table: str | None) -> int:
        if not self._redis_available():
            return 0
        assert self._redis is not None
        try:
            await self._redis.publish(self._channel, table or "")
            if table is None:
                keys = [k async for k in self._redis.scan_iter(match=self._prefix + "*", count=500)]
                if keys:
                    await self._redis.delete(*keys)
                return sum(1 for k in keys if not k[len(self._prefix):].startswith((b"tables:", b"table:")))
            members = [m.decode() if isinstance(m, bytes) else m
                       for m in await self._redis.smembers(self._prefix + "table:" + table)]
            keys = [self._prefix + m for m in members]
            doomed = [*keys, *(self._prefix + "tables:" + m for m in members),
                      self._prefix + "table:" + table]
            removed = int(await self._redis.delete(*keys)) if keys else 0
            await self._redis.delete(*doomed)
            return removed
        except (RedisError, OSError, TimeoutError) as error:
            self._redis_failed(error)
            return 0

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()
