"""Slots and queues of one gateway process: who may run now, who waits, who goes next.

A query holds a `Ticket` from the moment it queues until it ends. A ticket runs when its group has a free
slot (`max_concurrency`), its user is under `max_concurrency_per_user`, and all groups together are under
`capacity.max_concurrency`. When a slot frees, waiting tickets are considered highest priority first, FIFO
within a priority (arrival order); a ticket held back only by its group's or its user's limit does not hold
back the others, while a full shared capacity stops the scan (strict priority: nothing may overtake the
best waiting query for a shared slot).

`SlotPool` is the interface; `LocalSlots` counts in this process, `redis_slots.RedisSlots` across replicas.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.errors import InsufficientResources, QueryCanceled
from gateway.workload.model import ResourceGroup


class TicketState(StrEnum):
    NEW = "NEW"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"


@dataclass(eq=False)
class Ticket:
    """One query's claim on a slot. `id` is the query id (unique across replicas)."""

    id: str
    user: str
    group: ResourceGroup
    total_limit: int | None  # capacity.max_concurrency of the policy that admitted it
    state: TicketState = TicketState.NEW
    seq: int = 0
    enqueued_at: float = field(default_factory=time.monotonic)
    admitted_at: float | None = None
    holder: SlotPool | None = None  # the pool counting it once it runs
    admitted: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def mark_running(self, holder: SlotPool) -> None:
        self.state = TicketState.RUNNING
        self.holder = holder
        self.admitted_at = time.monotonic()
        if not self.admitted.done():
            self.admitted.set_result(None)

    def mark_withdrawn(self) -> None:
        self.state = TicketState.DONE
        if not self.admitted.done():
            self.admitted.set_exception(QueryCanceled("Query was canceled while queued"))
            self.admitted.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def queue_full(group: ResourceGroup) -> InsufficientResources:
    return InsufficientResources(
        f"Too many queued queries for resource group '{group.name}' (max_queued {group.max_queued})",
        error_name="QUERY_QUEUE_FULL")


@dataclass(frozen=True, slots=True)
class GroupCounts:
    running: int = 0
    queued: int = 0


@dataclass(frozen=True, slots=True)
class ClusterEntry:
    """A query holding or waiting for a slot on any replica."""

    query_id: str
    group: str
    user: str
    replica: str
    state: str  # QUEUED | RUNNING


KillHandler = Callable[[str, str], None]  # (query id, message)


class SlotPool(abc.ABC):
    on_kill: KillHandler | None = None  # called for kill requests other replicas send to this one

    async def wait_admitted(self, ticket: Ticket) -> None:
        """Wait for `ticket`'s slot. A waiter cancelled meanwhile (its client left, it was killed) gives its
        place or its slot back through `release`, whichever pool held it: the one rule for every pool."""
        try:
            await ticket.admitted
        except asyncio.CancelledError:
            self.release(ticket)
            raise

    @abc.abstractmethod
    async def acquire(self, ticket: Ticket) -> None:
        """Return once `ticket` runs. Raises QUERY_QUEUE_FULL when it cannot run and its group's queue is
        full. If the waiting task is cancelled the ticket leaves the queue (or frees its slot)."""

    @abc.abstractmethod
    def release(self, ticket: Ticket) -> None:
        """Free the ticket's slot, or take it out of the queue (its waiter gets QueryCanceled). Idempotent."""

    @abc.abstractmethod
    def counts(self) -> dict[str, GroupCounts]:
        """Running and queued tickets per group, as this pool sees them."""

    async def cluster(self) -> list[ClusterEntry] | None:
        """Every query of every replica, where the pool sees other replicas; None otherwise."""
        return None

    async def send_kill(self, replica: str, query_id: str, message: str) -> None:
        """Ask another replica to kill one of its queries."""
        raise NotImplementedError("this slot pool does not reach other replicas")

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work (heartbeats)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work and give back what is held."""


class LocalSlots(SlotPool):
    def __init__(self) -> None:
        self._queue: list[Ticket] = []
        self._running: Counter[str] = Counter()
        self._per_user: Counter[tuple[str, str]] = Counter()
        self._total = 0
        self._seq = itertools.count()
        self._paused = False
        self._holding: set[Ticket] = set()  # the running tickets counted here

    async def acquire(self, ticket: Ticket) -> None:
        self.enqueue(ticket)
        await self.wait(ticket)

    def take_place(self, ticket: Ticket) -> None:
        """Give the ticket its place in the arrival order now, for an `enqueue(placed=True)` later."""
        ticket.seq = next(self._seq)

    def enqueue(self, ticket: Ticket, *, check_full: bool = True, placed: bool = False) -> None:
        ticket.state = TicketState.QUEUED
        if not placed:
            self.take_place(ticket)
        self._queue.append(ticket)
        self._dispatch()
        if check_full and ticket.state is TicketState.QUEUED:
            waiting = sum(1 for t in self._queue if t.group.name == ticket.group.name)
            if waiting > ticket.group.max_queued:
                self._queue.remove(ticket)
                ticket.state = TicketState.DONE
                raise queue_full(ticket.group)

    async def wait(self, ticket: Ticket) -> None:
        await self.wait_admitted(ticket)

    def release(self, ticket: Ticket) -> None:
        if ticket.state is TicketState.QUEUED and ticket in self._queue:
            self._queue.remove(ticket)
            ticket.mark_withdrawn()
        elif ticket.state is TicketState.RUNNING and ticket.holder is self:
            ticket.state = TicketState.DONE
            self._count(ticket, -1)
            self._dispatch()

    def adopt(self, ticket: Ticket) -> None:
        """Count a ticket that runs already (admitted elsewhere), whatever the limits: what runs is counted
        before anything more is admitted."""
        self._count(ticket, 1)
        ticket.holder = self

    def held(self) -> tuple[list[Ticket], list[Ticket]]:
        """The running tickets and the waiting ones, best first."""
        self._queue.sort(key=_order)
        running = [t for t in self._holding if t.state is TicketState.RUNNING and t.holder is self]
        return running, list(self._queue)

    def forget(self, tickets: list[Ticket]) -> None:
        """Stop counting and queueing `tickets` (another pool holds them now); their states stay as they are.
        Admits nothing."""
        for ticket in tickets:
            if ticket.state is TicketState.QUEUED and ticket in self._queue:
                self._queue.remove(ticket)
            elif ticket.state is TicketState.RUNNING and ticket.holder is self:
                self._count(ticket, -1)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Admit nothing inside the block (releases still count); admit what may run once it ends."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False
            self._dispatch()

    def counts(self) -> dict[str, GroupCounts]:
        queued = Counter(t.group.name for t in self._queue)
        names = set(queued) | {g for g, n in self._running.items() if n}
        return {name: GroupCounts(self._running[name], queued[name]) for name in sorted(names)}

    def _count(self, ticket: Ticket, by: int) -> None:
        group, user = ticket.group.name, ticket.user
        self._running[group] += by
        self._per_user[(group, user)] += by
        if self._per_user[(group, user)] <= 0:
            del self._per_user[(group, user)]
        self._total += by
        if by > 0:
            self._holding.add(ticket)
        else:
            self._holding.discard(ticket)

    def _dispatch(self) -> None:
        if not self._queue or self._paused:
            return
        self._queue.sort(key=_order)
        for ticket in list(self._queue):
            if ticket.total_limit is not None and self._total >= ticket.total_limit:
                break
            group = ticket.group
            if self._running[group.name] >= group.max_concurrency:
                continue
            per_user = group.max_concurrency_per_user
            if per_user is not None and self._per_user[(group.name, ticket.user)] >= per_user:
                continue
            self._queue.remove(ticket)
            self._count(ticket, 1)
            ticket.mark_running(self)


def _order(ticket: Ticket) -> tuple[int, int]:
    return -ticket.group.priority, ticket.seq
