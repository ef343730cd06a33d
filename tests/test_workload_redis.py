"""RedisSlots against the real Redis on 127.0.0.1:6379: several pools in one process act as replicas."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.errors import InsufficientResources
from gateway.metrics import Metrics
from gateway.workload.model import ResourceGroup, Selector
from gateway.workload.redis_slots import RedisSlots
from gateway.workload.slots import Ticket
from tests.conftest import REDIS_URL, needs_redis

REDIS = REDIS_URL
pytestmark = needs_redis


def group(name: str, *, priority: int = 0, concurrency: int = 1, queued: int = 10) -> ResourceGroup:
    return ResourceGroup(name=name, priority=priority, max_concurrency=concurrency, max_queued=queued,
                         selectors=(Selector(),))


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


@asynccontextmanager
async def replica(prefix: str, *, lease: float = 3.0, url: str = REDIS, metrics: Metrics | None = None,
                  retry: float = 30, timeout: float = 0.5) -> AsyncIterator[RedisSlots]:
    pool = RedisSlots(url=url, prefix=prefix, replica=uuid.uuid4().hex[:6], lease_seconds=lease, poll_seconds=0.02,
                      retry_seconds=retry, metrics=metrics or Metrics(), timeout_seconds=timeout)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_two_replicas_share_a_groups_concurrency_and_priority(prefix: str) -> None:
    async def scenario() -> None:
        low, high = group("low", priority=1, concurrency=2), group("high", priority=5, concurrency=2)
        async with replica(prefix) as a, replica(prefix) as b:
            first = Ticket(id="a1", user="u", group=low, total_limit=2)
            second = Ticket(id="b1", user="u", group=low, total_limit=2)
            await a.acquire(first)
            await b.acquire(second)  # the shared capacity (2) is now used up across both replicas
            order: list[str] = []

            async def wait(pool: RedisSlots, ticket: Ticket) -> None:
                await pool.acquire(ticket)
                order.append(ticket.id)

            tasks = []
            for pool, name, g in ((a, "low-a", low), (b, "low-b", low), (a, "high-a", high)):
                # one at a time, so their order of arrival in Redis is the order FIFO is checked against
                tasks.append(asyncio.create_task(wait(pool, Ticket(id=name, user="u", group=g, total_limit=2))))
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.2)
            assert order == []
            clusterwide = await a.cluster()
            assert clusterwide is not None and sorted(e.state for e in clusterwide) == ["QUEUED"] * 3 + ["RUNNING"] * 2
            b.release(second)
            await eventually(lambda: len(order) == 1)
            assert order == ["high-a"]  # the best waiting query, though it arrived last and on another replica
            a.release(first)
            await eventually(lambda: len(order) == 2)
            assert order == ["high-a", "low-a"]  # then FIFO
            for task in tasks[:2]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    run(scenario)


def test_the_queue_limit_holds_across_replicas(prefix: str) -> None:
    async def scenario() -> None:
        tight = group("tight", concurrency=1, queued=1)
        async with replica(prefix) as a, replica(prefix) as b:
            await a.acquire(Ticket(id="run", user="u", group=tight, total_limit=None))
            waiting = asyncio.create_task(b.acquire(Ticket(id="wait", user="u", group=tight, total_limit=None)))
            await asyncio.sleep(0.1)
            with pytest.raises(InsufficientResources) as refused:
                await a.acquire(Ticket(id="over", user="u", group=tight, total_limit=None))
            assert refused.value.error_name == "QUERY_QUEUE_FULL"
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            await asyncio.sleep(0.1)
            entries = await a.cluster()
            assert entries is not None and [e.query_id for e in entries] == ["run"]  # the cancelled one left

    run(scenario)


def test_a_dead_replicas_slots_return_when_its_lease_expires(prefix: str) -> None:
    async def scenario() -> None:
        one = group("one", concurrency=1)
        async with replica(prefix, lease=1.0) as survivor:
            dead = RedisSlots(url=REDIS, prefix=prefix, replica="dead", lease_seconds=1.0, poll_seconds=0.02,
                              retry_seconds=30, metrics=Metrics())
            await dead.acquire(Ticket(id="held", user="u", group=one, total_limit=None))  # never renewed
            began = time.monotonic()
            await survivor.acquire(Ticket(id="next", user="u", group=one, total_limit=None))
            waited = time.monotonic() - began
            assert 0.5 < waited < 2.0, waited
            await dead._client.aclose()  # as a crash would: nothing given back, nothing renewed

    run(scenario)


def test_redis_unreachable_falls_back_to_per_process_limits(prefix: str) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        one = group("one", concurrency=1)
        async with replica(prefix, url="redis://127.0.0.1:1/0", metrics=metrics) as pool:
            first = Ticket(id="a", user="u", group=one, total_limit=None)
            await pool.acquire(first)
            second = asyncio.create_task(pool.acquire(Ticket(id="b", user="u", group=one, total_limit=None)))
            await asyncio.sleep(0.05)
            assert not second.done()  # the group limit still holds, counted in this process
            pool.release(first)
            await asyncio.wait_for(second, 1)
            assert metrics.workload_redis_up._value.get() == 0
            assert metrics.workload_local_admissions._value.get() == 2

    run(scenario)
