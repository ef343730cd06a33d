"""Slots shared by every gateway replica through Redis (`workload.redis`); the scripts and keys are in
`redis_scripts`.

Each replica renews the leases of its queries (`sync`, every `lease_seconds / 3`, every `poll_seconds` while
it has queries waiting). A replica that dies stops renewing; any script that runs after the expiry purges
its entries, so its slots return within `lease_seconds` of its last renewal. `sync` also admits waiting
queries of any replica in priority order (the owner learns it on its next sync), and a release admits at once.

The client checks idle connections (`health_check_interval`), bounds every socket operation by
`redis_timeout_seconds` and retries a failed connection twice with exponential backoff, so a Redis restart
costs a reconnect, not a fallback.

Redis unreachable (a call failing after its retries): the replica logs it once, counts
`gateway_workload_redis_errors_total`, sets `gateway_workload_redis_up` to 0 and admits with per-process
limits (`LocalSlots`, the same group limits counted in this process) until Redis answers again. Falling back
moves everything this process holds into the local pool: the queries Redis admitted count there as running
(so this process never runs more than a group's limit), the waiting ones queue there in their order. One
retry schedule is shared by every caller: Redis is tried again `retry_seconds` after the failure that took it
down (or after the last failed retry), by one caller only, and other calls failing meanwhile do not postpone
it. The retry is a recovery: it hands Redis what this process runs (counted whatever the limits) and what
waits, in one script, before anything new is admitted through Redis.

The bound: with R processes sharing Redis, at most R x a group's `max_concurrency` queries of the group run
at once while Redis is down or recovering (each process at most the limit), and the limit again once every
process has recovered and the queries admitted during the outage have ended. The same holds for
`max_concurrency_per_user` and `capacity.max_concurrency`.
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
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.metrics import Metrics
from gateway.workload import redis_scripts
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

CONNECTION_RETRIES = 2  # a call takes at most (1 + CONNECTION_RETRIES) x redis_timeout_seconds + backoff
HEALTH_CHECK_SECONDS = 5.0  # a connection idle longer is checked (PING) before it is used
SHUTDOWN_SECONDS = 2.0  # what close() may spend giving slots back before their leases are left to expire


def redis_client(url: str, timeout_seconds: float) -> Redis:
    """A client that reconnects and retries instead of failing on a stale connection."""
    return Redis.from_url(url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
                          health_check_interval=HEALTH_CHECK_SECONDS,
                          retry=Retry(ExponentialBackoff(cap=timeout_seconds, base=0.02), CONNECTION_RETRIES),
                          retry_on_error=[RedisConnectionError, RedisTimeoutError])


def _info(ticket: Ticket, replica: str) -> str:
    group = ticket.group
    return json.dumps({"g": group.name, "u": ticket.user, "r": replica, "s": "q", "gc": group.max_concurrency,
                       "uc": group.max_concurrency_per_user or 0, "tc": ticket.total_limit or 0,
                       "p": group.priority})


def _priority(ticket: Ticket) -> int:
    return min(ticket.group.priority, MAX_PRIORITY)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisSlots(SlotPool):
    def __init__(self, *, url: str, prefix: str, replica: str, lease_seconds: float, poll_seconds: float,
                 retry_seconds: float, metrics: Metrics, timeout_seconds: float = 1.0) -> None:
        self.replica = replica
        self.fallback = LocalSlots()
        self._client: Redis = redis_client(url, timeout_seconds)
        self._keys = [f"{prefix}{name}" for name in redis_scripts.KEY_NAMES]
        self._prefix = prefix
        self._lease_ms = int(lease_seconds * 1000)
        self._poll_seconds = poll_seconds
        self._heartbeat_seconds = lease_seconds / 3
        self._retry_seconds = retry_seconds
        self._metrics = metrics
        self._enqueue = self._client.register_script(redis_scripts.ENQUEUE)
        self._sync = self._client.register_script(redis_scripts.SYNC)
        self._release = self._client.register_script(redis_scripts.RELEASE)
        self._recover = self._client.register_script(redis_scripts.RECOVER)
        self._snapshot = self._client.register_script(redis_scripts.SNAPSHOT)
        self._enqueuing: set[str] = set()
        self._waiting: dict[str, Ticket] = {}
        self._running: dict[str, Ticket] = {}
        self._up = True
        self._retry_at = 0.0  # while down: when Redis is tried again (one schedule for every caller)
        self._recovery = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        metrics.workload_redis_up.set(1)

    @property
    def up(self) -> bool:
        return self._up

    # -- SlotPool ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._sync_forever(), name="workload-redis-sync")

    async def close(self) -> None:
        """Give back what this replica holds, then close the client, within SHUTDOWN_SECONDS. Every call this
        pool started has ended before the client closes (a call still running then would leave its
        connection to the garbage collector): the sync loop is cancelled and awaited, and slots being given
        back share the shutdown's time with the ones given back here, then are cancelled."""
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_SECONDS
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # its end, however it came
        if self._background:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            _, unfinished = await asyncio.wait(list(self._background), timeout=remaining)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        held = list(self._running) + list(self._waiting)
        self._running.clear()
        self._waiting.clear()
        if held and self._up:
            try:
                async with asyncio.timeout_at(deadline):
                    for query_id in held:
                        await self._release(keys=self._keys, args=[query_id])
            except (RedisError, TimeoutError) as error:
                log.warning("could not give back %d Redis slots on shutdown (%s); their leases expire",
                            len(held), type(error).__name__)
        await self._client.aclose()

    async def acquire(self, ticket: Ticket) -> None:
        self.fallback.take_place(ticket)  # its place should it wait in the local pool
        if not await self._recovered():
            await self._acquire_locally(ticket)
            return
        ticket.state = TicketState.QUEUED
        self._enqueuing.add(ticket.id)
        try:
            status = _text(await self._enqueue(keys=self._keys, args=[
                ticket.id, _info(ticket, self.replica), _priority(ticket), ticket.group.max_queued,
                self._lease_ms]))
        except RedisError as error:
            self._failed(error)
            if ticket.state is TicketState.DONE:
                await ticket.admitted  # raises: it was withdrawn meanwhile
            await self._acquire_locally(ticket)
            return
        finally:
            self._enqueuing.discard(ticket.id)
        if ticket.state is TicketState.DONE:  # released while the script ran: give the entry back
            self._spawn(self._give_back(ticket.id))
            await ticket.admitted  # raises
        if status == "full":
            ticket.state = TicketState.DONE
            raise queue_full(ticket.group)
        if not self._up:  # Redis failed for another call meanwhile: this process counts it from now on
            if status == "running":
                self.fallback.adopt(ticket)
                ticket.mark_running(self.fallback)
            else:
                self.fallback.enqueue(ticket, check_full=False, placed=True)
            await self.fallback.wait(ticket)
            return
        if status == "running":
            self._running[ticket.id] = ticket
            ticket.mark_running(self)
        else:
            self._waiting[ticket.id] = ticket
            self._wake.set()
        await self.wait_admitted(ticket)

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
        if not self._up:
            return None
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
            if not self._up:
                interval = max(0.0, self._retry_at - time.monotonic())
            else:
                interval = self._poll_seconds if self._waiting else self._heartbeat_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            if not self._up:
                await self._recovered()
            elif self._waiting or self._running:
                await self._sync_once()

    async def _sync_once(self) -> None:
        ids = [*self._waiting, *self._running]
        try:
            states, kills = await self._sync(keys=[*self._keys, f"{self._prefix}kills:{self.replica}"],
                                             args=[self._lease_ms, *ids])
        except RedisError as error:
            self._failed(error)
            return
        if not self._up:  # another call failed meanwhile: the local pool holds everything now
            return
        for query_id, raw_state in zip(ids, states, strict=True):
            state = raw_state.decode()
            if query_id in self._waiting and state == "r":
                ticket = self._waiting.pop(query_id)
                self._running[query_id] = ticket
                ticket.mark_running(self)
            elif query_id in self._waiting and state == "lost":
                log.warning("query %s lost its place in the Redis queue; queueing it locally", query_id)
                self.fallback.enqueue(self._waiting.pop(query_id), check_full=False, placed=True)
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
            admitted = await self._release(keys=self._keys, args=[query_id])
        except RedisError as error:
            self._failed(error)
            return
        if admitted and self._waiting:
            self._wake.set()

    async def _acquire_locally(self, ticket: Ticket) -> None:
        self._metrics.workload_local_admissions.inc()
        self.fallback.enqueue(ticket, placed=True)
        await self.fallback.wait(ticket)

    # -- outage and recovery -------------------------------------------------------------------------------

    def _failed(self, error: Exception, *, retry: bool = False) -> None:
        """A call failed. Only the failure that takes Redis down, or a failed retry, sets when Redis is tried
        again: calls that were in flight and fail later do not postpone it."""
        self._metrics.workload_redis_errors.inc()
        if self._up:
            self._up = False
            self._retry_at = time.monotonic() + self._retry_seconds
            self._metrics.workload_redis_up.set(0)
            log.error("Redis for workload admission failed (%s: %s): admitting with per-process limits; "
                      "retrying every %.0fs", type(error).__name__, error, self._retry_seconds)
            self._hand_to_local_pool()
        elif retry:
            self._retry_at = time.monotonic() + self._retry_seconds
        self._wake.set()

    def _hand_to_local_pool(self) -> None:
        """Everything this process holds is counted and queued locally from now: running first, so the
        waiting ones are admitted against what already runs."""
        running, waiting = list(self._running.values()), list(self._waiting.values())
        self._running.clear()
        self._waiting.clear()
        with self.fallback.paused():
            for ticket in running:
                self.fallback.adopt(ticket)
            for ticket in waiting:
                self.fallback.enqueue(ticket, check_full=False, placed=True)

    async def _recovered(self) -> bool:
        """True when Redis counts this process's queries: at once while it is up; while it is down, once the
        retry is due and has handed Redis what runs and waits here."""
        if self._up:
            return True
        async with self._recovery:
            if self._up:
                return True
            if time.monotonic() < self._retry_at:
                return False
            with self.fallback.paused():  # the local pool admits nothing while Redis takes over
                running, waiting = self.fallback.held()
                args: list[Any] = [self._lease_ms, len(running)]
                for ticket in (*running, *waiting):
                    args += [ticket.id, _info(ticket, self.replica), _priority(ticket)]
                try:
                    states = await self._recover(keys=self._keys, args=args)
                except RedisError as error:
                    self._failed(error, retry=True)
                    return False
                self.fallback.forget([*running, *waiting])
                for ticket, state in zip((*running, *waiting), states, strict=True):
                    self._take_over(ticket, _text(state))
            self._up = True
            self._metrics.workload_redis_up.set(1)
            log.warning("Redis for workload admission answers again: %d running and %d waiting queries of this "
                        "process counted there; cluster-wide limits restored", len(running), len(waiting))
            self._wake.set()
            return True

    def _take_over(self, ticket: Ticket, state: str) -> None:
        if ticket.state is TicketState.DONE:  # ended (or withdrawn) while the recovery ran
            self._spawn(self._give_back(ticket.id))
        elif state == "r":
            self._running[ticket.id] = ticket
            if ticket.state is TicketState.QUEUED:
                ticket.mark_running(self)
            else:
                ticket.holder = self
        else:
            self._waiting[ticket.id] = ticket

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
