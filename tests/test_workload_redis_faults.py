"""RedisSlots when Redis fails: a TcpProxy of the test's own stands between the pools and the real Redis, and
`cut()` is the outage. Several pools in one process act as replicas."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager

import pytest

from gateway.metrics import Metrics
from gateway.workload.model import ResourceGroup, Selector
from gateway.workload.redis_slots import RedisSlots
from gateway.workload.slots import Ticket, TicketState
from tests.conftest import needs_redis
from tests.tcp_proxy import HangingProxy, TcpProxy
from tests.test_workload_redis import eventually, run
from tests.test_workload_redis import replica as redis_replica

pytestmark = [needs_redis]

RETRY = 0.3


def group(concurrency: int) -> ResourceGroup:
    return ResourceGroup(name="g", priority=0, max_concurrency=concurrency, max_queued=10, selectors=(Selector(),))


@contextmanager
def redis_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(6379)
    try:
        yield proxy
    finally:
        proxy.close()


def replica(prefix: str, proxy: TcpProxy, metrics: Metrics | None = None) -> AbstractAsyncContextManager[RedisSlots]:
    return redis_replica(prefix, url=f"redis://127.0.0.1:{proxy.port}/0", metrics=metrics, retry=RETRY, timeout=0.3)


def start(pool: RedisSlots, ticket: Ticket) -> asyncio.Task[None]:
    return asyncio.create_task(pool.acquire(ticket))


def test_a_query_waiting_in_redis_runs_first_when_redis_fails(redis_prefix: str) -> None:
    async def scenario() -> None:
        one = group(1)
        with redis_proxy() as proxy:
            async with replica(redis_prefix, proxy) as pool:
                first = Ticket(id="first", user="u", group=one, total_limit=None)
                await pool.acquire(first)
                waiting = Ticket(id="waiting", user="u", group=one, total_limit=None)
                waited = start(pool, waiting)
                await eventually(lambda: waiting.state is TicketState.QUEUED and "waiting" in pool._waiting)
                proxy.cut()
                later = [Ticket(id=f"later{i}", user="u", group=one, total_limit=None) for i in range(5)]
                arrivals = [start(pool, ticket) for ticket in later]
                pool.release(first)
                await asyncio.wait_for(waited, 3)  # within one call's retries, not the whole outage
                await asyncio.sleep(0.2)
                assert not any(task.done() for task in arrivals)  # later arrivals queue behind it
                pool.release(waiting)
                await asyncio.wait_for(arrivals[0], 1)
                for ticket, task in zip(later, arrivals, strict=True):
                    await asyncio.wait_for(task, 1)
                    pool.release(ticket)

    run(scenario)


def test_a_redis_restart_costs_a_reconnect_not_a_fallback(redis_prefix: str) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        with redis_proxy() as proxy:
            async with replica(redis_prefix, proxy, metrics) as pool:
                for round_ in range(3):
                    ticket = Ticket(id=f"q{round_}", user="u", group=group(1), total_limit=None)
                    await pool.acquire(ticket)
                    pool.release(ticket)
                    await asyncio.sleep(0.1)
                    proxy.cut()  # every pooled connection dies, as when Redis restarts
                    proxy.restore()
                assert metrics.workload_redis_up._value.get() == 1
                assert metrics.workload_local_admissions._value.get() == 0
                assert metrics.workload_redis_errors._value.get() == 0

    run(scenario)


def test_the_fallback_counts_what_redis_admitted_and_recovery_recounts(redis_prefix: str) -> None:
    async def scenario() -> None:
        two = group(2)
        with redis_proxy() as proxy:
            async with replica(redis_prefix, proxy) as a, replica(redis_prefix, proxy) as b:
                held = [Ticket(id=f"a{i}", user="u", group=two, total_limit=None) for i in range(2)]
                for ticket in held:
                    await a.acquire(ticket)  # the cluster's two slots, admitted by Redis
                proxy.cut()
                a_more = Ticket(id="a-more", user="u", group=two, total_limit=None)
                a_waits = start(a, a_more)
                b_tickets = [Ticket(id=f"b{i}", user="u", group=two, total_limit=None) for i in range(3)]
                b_tasks = [start(b, ticket) for ticket in b_tickets]
                await asyncio.sleep(1.5)  # every call has failed after its retries
                assert not a.up and not b.up
                assert not a_waits.done()  # a's process runs 2 already: the per-process bound holds
                assert [task.done() for task in b_tasks] == [True, True, False]  # 2 x 2 in the cluster: the bound
                proxy.restore()
                await eventually(lambda: a.up and b.up)
                cluster = await a.cluster()
                assert cluster is not None
                running = sorted(e.query_id for e in cluster if e.state == "RUNNING")
                assert running == ["a0", "a1", "b0", "b1"]  # recovery counted what runs before admitting more
                a.release(held[0])
                b.release(b_tickets[0])
                await asyncio.sleep(0.3)
                assert not a_waits.done() and not b_tasks[2].done()  # still 2 running: the limit holds again
                a.release(held[1])
                await asyncio.wait_for(asyncio.wait([a_waits, b_tasks[2]], return_when="FIRST_COMPLETED"), 2)
                await asyncio.sleep(0.3)
                assert a_waits.done() != b_tasks[2].done()  # one slot freed: one of them runs
                for pool, ticket in ((a, a_more), (b, b_tickets[1]), (b, b_tickets[2])):
                    pool.release(ticket)
                for task in (a_waits, b_tasks[2]):
                    task.cancel()

    run(scenario)


def test_the_replica_directory_fails_fast_while_redis_is_down(redis_prefix: str) -> None:
    from gateway.replicas import DirectoryUnavailable, ReplicaDirectory

    async def scenario() -> None:
        metrics = Metrics()
        held = ["q1"]
        with redis_proxy() as proxy:
            directory = ReplicaDirectory(url=f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_prefix, node_id="n1",
                                         internal_url="http://127.0.0.1:1", ttl_seconds=0.6, timeout_seconds=0.3,
                                         held=lambda: held, metrics=metrics)
            await directory.start()
            try:
                found = await directory.holder("q1")
                assert found is not None and found.url == "http://127.0.0.1:1"
                proxy.cut()
                with contextlib.suppress(DirectoryUnavailable):
                    await directory.holder("q1")  # the failure: retried, then given up
                began = time.monotonic()
                await directory.announce("q2")  # not tried while failing: no POST waits on Redis
                for _ in range(5):
                    with contextlib.suppress(DirectoryUnavailable):
                        await directory.holder("q1")
                assert time.monotonic() - began < 0.1
                held.append("q2")
                proxy.restore()
                await eventually(lambda: not directory._failing, timeout=3)  # the next heartbeat
                found = await directory.holder("q2")  # written by that heartbeat
                assert found is not None and found.node_id == "n1"
            finally:
                await directory.close()
        assert metrics.replica_redis_errors._value.get() >= 1

    run(scenario)


@pytest.mark.parametrize("outage", ["hang", "cut"])
@pytest.mark.parametrize("giving_back", [0, 1, 3])
def test_close_ends_every_call_it_started_before_the_client_closes(redis_prefix: str, outage: str,
                                                                     giving_back: int) -> None:
    """Slots being given back, and the sync loop, are mid-call when Redis stops answering (a hang: calls wait
    for their timeout; a cut: connections fail) and the pool closes: no task of the pool outlives `close`,
    and no connection is left for the garbage collector to find still open."""
    unraisable: list[str] = []

    async def scenario() -> None:
        proxy: HangingProxy | TcpProxy = HangingProxy(6379) if outage == "hang" else TcpProxy(6379)
        try:
            pool = RedisSlots(url=f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_prefix, replica="closing",
                              lease_seconds=3, poll_seconds=0.02, retry_seconds=RETRY, metrics=Metrics(),
                              timeout_seconds=0.3)
            await pool.start()
            tickets = [Ticket(id=f"q{i}", user="u", group=group(8), total_limit=None) for i in range(giving_back + 1)]
            for ticket in tickets:
                await pool.acquire(ticket)
            proxy.hang() if isinstance(proxy, HangingProxy) else proxy.cut()
            for ticket in tickets[:giving_back]:
                pool.release(ticket)  # a give-back call each, now in flight
            pool._wake.set()  # and the sync loop's next call
            await asyncio.sleep(0.05)
            await pool.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert not others, f"tasks outlived close: {others}"
        finally:
            proxy.close()

    previous = sys.unraisablehook
    sys.unraisablehook = lambda hook: unraisable.append(f"{hook.exc_type.__name__} in {hook.object!r}")
    try:
        run(scenario)
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert not unraisable, unraisable
