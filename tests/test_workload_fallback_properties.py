"""Property test of the per-process pool's fallback and recovery operations (gateway/workload/slots.py), which
RedisSlots uses when Redis fails: whatever the interleaving of arrivals, releases, adoptions of queries Redis
admitted, paused stretches and hand-overs back to Redis, the counts equal the tickets held, nothing is admitted
while paused, and an admission never takes a group, a user or the capacity past its limit."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.workload.model import ResourceGroup, Selector
from gateway.workload.slots import LocalSlots, Ticket, TicketState

GROUPS = [ResourceGroup(name="one", priority=2, max_concurrency=1, max_queued=100, selectors=(Selector(),)),
          ResourceGroup(name="two", priority=1, max_concurrency=2, max_queued=100, selectors=(Selector(),),
                        max_concurrency_per_user=1)]
TOTAL = 2

steps = st.lists(st.tuples(st.sampled_from(["arrive", "arrive", "release", "adopt", "pause", "resume", "hand_over"]),
                           st.integers(0, 1), st.integers(0, 1), st.integers(0, 40)), max_size=50)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_fallback_operations_keep_counts_and_limits(plan: list[tuple[str, int, int, int]]) -> None:
    async def scenario() -> None:
        pool = LocalSlots()
        tickets: list[Ticket] = []
        paused = None
        for serial, (kind, g, u, pick) in enumerate(plan):
            group, user = GROUPS[g], f"u{u}"
            running_before = {t for t in tickets if t.state is TicketState.RUNNING and t.holder is pool}
            if kind in ("arrive", "adopt"):
                ticket = Ticket(id=str(serial), user=user, group=group, total_limit=TOTAL)
                tickets.append(ticket)
                if kind == "arrive":
                    pool.enqueue(ticket, check_full=False)
                else:  # Redis admitted it before the outage: it runs, whatever the local counts
                    ticket.mark_running(pool)
                    pool.adopt(ticket)
            elif kind == "release" and tickets:
                pool.release(tickets[pick % len(tickets)])
            elif kind == "pause" and paused is None:
                paused = pool.paused()
                paused.__enter__()
            elif kind == "resume" and paused is not None:
                paused.__exit__(None, None, None)
                paused = None
            elif kind == "hand_over":  # a recovery: Redis takes everything this pool holds
                running, waiting = pool.held()
                pool.forget([*running, *waiting])
                for ticket in (*running, *waiting):
                    ticket.holder = None
                    ticket.state = TicketState.DONE
            held = [t for t in tickets if t.state is TicketState.RUNNING and t.holder is pool]
            admitted = {t for t in held if t not in running_before} - ({tickets[-1]} if kind == "adopt" else set())
            if paused is not None and kind != "resume":
                assert not admitted  # paused: nothing admitted
            if admitted:
                per_group = Counter(t.group.name for t in held)
                for t in admitted:
                    assert per_group[t.group.name] <= t.group.max_concurrency
                    if t.group.max_concurrency_per_user is not None:
                        same = sum(1 for h in held if h.group is t.group and h.user == t.user)
                        assert same <= t.group.max_concurrency_per_user
                assert len(held) <= TOTAL
            counts = pool.counts()
            expected_running = Counter(t.group.name for t in held)
            expected_queued = Counter(t.group.name for t in tickets if t.state is TicketState.QUEUED)
            for name in {*expected_running, *expected_queued, *counts}:
                assert counts.get(name) is not None
                assert (counts[name].running, counts[name].queued) == (expected_running[name], expected_queued[name])
            running, waiting = pool.held()
            assert set(running) == set(held)
            assert [t.state for t in waiting] == [TicketState.QUEUED] * len(waiting)
        if paused is not None:
            paused.__exit__(None, None, None)

    asyncio.run(scenario())
