"""Which replica holds which query, in Redis (`workload.redis`), so that any replica can answer any poll.

    <prefix>replica:<node id>   the replica's internal URL            expires replica_ttl_seconds after its heartbeat
    <prefix>holder:<query id>   the node id of the replica holding it  refreshed by the holder's heartbeat;
                                expires HOLDER_TTL_FACTOR x replica_ttl_seconds (at least a minute) after it

A replica writes its query's holder key before the client learns the query id (the POST's answer), so the
first poll, on any replica, finds it. Every `replica_ttl_seconds / 3` it renews its own key and the holder keys
of every query it still answers for (running, or ended and kept for `GET /v1/query/{id}`). A replica that dies
stops renewing: its own key goes first, and a holder key naming a replica that has no key is a query on a
replica that is gone (`Holder.url` None): its clients are told so for a while, then "not found". On a clean
shutdown the replica deletes its own key at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis.exceptions import RedisError

from gateway.metrics import Metrics
from gateway.workload.redis_slots import redis_client

log = logging.getLogger("gateway.replicas")

HOLDER_TTL_FACTOR = 4
MIN_HOLDER_TTL_SECONDS = 60.0


def reachable_url(scheme: str, host: str, port: int) -> str:
    """The URL other machines reach a listener on `host:port` by: a wildcard address names this host."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class DirectoryUnavailable(Exception):
    """Redis did not answer a lookup."""


@dataclass(frozen=True, slots=True)
class Holder:
    node_id: str
    url: str | None  # None: the replica is gone (its registration expired or it shut down)


class ReplicaDirectory:
    def __init__(self, *, url: str, prefix: str, node_id: str, internal_url: str, ttl_seconds: float,
                 timeout_seconds: float, held: Callable[[], Iterable[str]], metrics: Metrics) -> None:
        self.node_id = node_id
        self.internal_url = internal_url
        self._client = redis_client(url, timeout_seconds)
        self._prefix = prefix
        self._ttl_ms = int(ttl_seconds * 1000)
        self._holder_ttl_ms = int(max(MIN_HOLDER_TTL_SECONDS, HOLDER_TTL_FACTOR * ttl_seconds) * 1000)
        self._interval = ttl_seconds / 3
        self._held = held
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def _replica_key(self, node_id: str) -> str:
        return f"{self._prefix}replica:{node_id}"

    def _holder_key(self, query_id: str) -> str:
        return f"{self._prefix}holder:{query_id}"

    async def start(self) -> None:
        await self._heartbeat()
        self._task = asyncio.create_task(self._heartbeat_forever(), name="replica-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(RedisError, TimeoutError):
            async with asyncio.timeout(2):
                await self._client.delete(self._replica_key(self.node_id))
        await self._client.aclose()

    async def announce(self, query_id: str) -> None:
        """Record this replica as the holder of `query_id`. A failure is logged and counted: the query still
        runs here, and only polls that reach another replica miss it. While Redis is failing it is not tried
        (the heartbeat writes every held query's key once Redis answers), so no POST waits on it."""
        if self._failing:
            return
        try:
            await self._client.set(self._holder_key(query_id), self.node_id, px=self._holder_ttl_ms)
        except RedisError as error:
            self._failed(error)

    async def holder(self, query_id: str) -> Holder | None:
        """The replica holding `query_id`; None when no replica does (unknown or long ended). While Redis is
        failing (until a heartbeat succeeds) it raises at once instead of waiting on retries."""
        if self._failing:
            raise DirectoryUnavailable("Redis failed; retried by the next heartbeat")
        try:
            node = await self._client.get(self._holder_key(query_id))
            if node is None:
                return None
            node_id = _text(node)
            url = await self._client.get(self._replica_key(node_id))
        except RedisError as error:
            self._failed(error)
            raise DirectoryUnavailable(str(error)) from None
        return Holder(node_id, _text(url) if url is not None else None)

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(self._replica_key(self.node_id), self.internal_url, px=self._ttl_ms)
                for query_id in self._held():
                    pipe.set(self._holder_key(query_id), self.node_id, px=self._holder_ttl_ms)
                await pipe.execute()
        except RedisError as error:
            self._failed(error)
            return
        if self._failing:
            self._failing = False
            log.warning("Redis for the replica directory answers again")

    def _failed(self, error: RedisError) -> None:
        self._metrics.replica_redis_errors.inc()
        if not self._failing:
            self._failing = True
            log.error("Redis for the replica directory failed (%s: %s): polls reaching other replicas cannot "
                      "find this replica's queries until it answers", type(error).__name__, error)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
