"""LocalSlots: the admission order and limits of one process, driven directly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.errors import GatewayError, InsufficientResources
from gateway.workload.model import ResourceGroup, Selector
from gateway.workload.slots import LocalSlots, SlotPool, Ticket, TicketState


def group(name: str, *, priority: int = 0, concurrency: int = 1, queued: int = 10,
          per_user: int | None = None) -> ResourceGroup:
    return ResourceGroup(name=name, priority=priority, max_concurrency=concurrency, max_queued=queued,
                         selectors=(Selector(),), max_concurrency_per_user=per_user)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


async def start(pool: SlotPool, ticket: Ticket, order: list[str]) -> asyncio.Task[Any]:
    async def acquire() -> None:
        await pool.acquire(ticket)
        order.append(ticket.id)

    task = asyncio.create_task(acquire())
    await asyncio.sleep(0)  # queued in submission order
    return task




def test_admission_order_under_a_shared_capacity() -> None:
    async def scenario() -> None:
        pool = LocalSlots()
        low, high = group("low", priority=1, concurrency=5), group("high", priority=9, concurrency=5)
        tickets = {name: Ticket(id=name, user="u", group=g, total_limit=1)
                   for name, g in (("holder", low), ("low1", low), ("high1", high), ("low2", low), ("high2", high))}
        await pool.acquire(tickets["holder"])
        order: list[str] = []
        tasks = [await start(pool, tickets[n], order) for n in ("low1", "high1", "low2", "high2")]
        running = "holder"
        for _ in range(4):
            pool.release(tickets[running])
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            running = order[-1]
        await asyncio.gather(*tasks)
        assert order == ["high1", "high2", "low1", "low2"]

    run(scenario)


def test_group_and_user_limits_hold_back_only_their_own_queries() -> None:
    async def scenario() -> None:
        pool = LocalSlots()
        shared = group("shared", concurrency=3, per_user=1)
        other = group("other", concurrency=1)
        order: list[str] = []
        first = Ticket(id="ann1", user="ann", group=shared, total_limit=None)
        await pool.acquire(first)
        waiting = await start(pool, Ticket(id="ann2", user="ann", group=shared, total_limit=None), order)
        await start(pool, Ticket(id="bob1", user="bob", group=shared, total_limit=None), order)
        await start(pool, Ticket(id="other1", user="ann", group=other, total_limit=None), order)
        await asyncio.sleep(0)
        assert sorted(order) == ["bob1", "other1"]  # ann's second query waits for her first
        assert pool.counts()["shared"].running == 2 and pool.counts()["shared"].queued == 1
        pool.release(first)
        await waiting
        assert order[-1] == "ann2"

    run(scenario)


def test_beyond_max_queued_a_query_is_refused_at_once() -> None:
    async def scenario() -> None:
        pool = LocalSlots()
        tight = group("tight", concurrency=1, queued=1)
        await pool.acquire(Ticket(id="a", user="u", group=tight, total_limit=None))
        await start(pool, Ticket(id="b", user="u", group=tight, total_limit=None), [])
        with pytest.raises(InsufficientResources) as refused:
            await pool.acquire(Ticket(id="c", user="u", group=tight, total_limit=None))
        assert refused.value.error_name == "QUERY_QUEUE_FULL" and "'tight'" in refused.value.message
        assert pool.counts()["tight"].queued == 1

    run(scenario)


def test_leaving_the_queue_frees_the_place_and_wakes_the_waiter_with_an_error() -> None:
    async def scenario() -> None:
        pool = LocalSlots()
        one = group("one", concurrency=1)
        holder = Ticket(id="a", user="u", group=one, total_limit=None)
        await pool.acquire(holder)
        queued = Ticket(id="b", user="u", group=one, total_limit=None)
        task = await start(pool, queued, [])
        pool.release(queued)
        with pytest.raises(GatewayError) as error:
            await task
        assert error.value.error_name == "USER_CANCELED" and queued.state is TicketState.DONE
        cancelled = Ticket(id="c", user="u", group=one, total_limit=None)
        task = await start(pool, cancelled, [])
        task.cancel()  # e.g. the queue timeout
        with pytest.raises(asyncio.CancelledError):
            await task
        assert "one" not in pool.counts() or pool.counts()["one"].queued == 0
        pool.release(holder)
        pool.release(holder)  # idempotent
        assert pool.counts() == {}

    run(scenario)
