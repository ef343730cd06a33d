"""The `admit` stage: which resource group, may it run, when, and for how long.

    enter     select the group (first matching selector), then the budget hook     -> Admission
    wait      wait for something else first (an identical query's result), as QUEUED, within queue_timeout
    admit     scan estimate vs max_scan_bytes; wait for a slot (queue_timeout); arm max_execution_time
    leave     exactly once per query, however it ends: free the slot or leave the queue

It also answers the admin views: the queries of each group, and kills (API, CLI, `kill_query`). Who may
kill: the query's own user, or a member of one of `workload.admin_groups`; both see their queries listed,
admins see everyone's (and the SQL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.access import Access
from gateway.errors import GatewayError, InsufficientResources, NotFound, PermissionDenied, UserError
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.workload.budget import Block, BudgetHook, Demote
from gateway.workload.model import ResourceGroup
from gateway.workload.select import QueryFacts, select_group
from gateway.workload.slots import SlotPool, Ticket
from gateway.workload.store import WorkloadStore

log = logging.getLogger("gateway.workload")

T = TypeVar("T")
Kill = Callable[[GatewayError], Coroutine[Any, Any, None]]
Estimate = Callable[[], Awaitable[int | None]]


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    query_id: str
    identity: Identity
    source: str | None
    client_tags: frozenset[str]
    query_type: str  # SELECT | EXPLAIN | DESCRIBE
    sql: str


@dataclass(eq=False)
class Admission:
    """One query in workload management, from `enter` to `leave`."""

    request: AdmissionRequest
    ticket: Ticket
    kill: Kill  # stops the query with an error (cancels it on its backend)
    state: str = "NEW"  # NEW -> QUEUED -> RUNNING -> DONE
    created: float = field(default_factory=time.time)
    timer: asyncio.TimerHandle | None = None

    @property
    def group(self) -> ResourceGroup:
        return self.ticket.group

    @property
    def queued_seconds(self) -> float:
        end = self.ticket.admitted_at if self.ticket.admitted_at is not None else time.monotonic()
        return max(0.0, end - self.ticket.enqueued_at)


def _seconds(value: float) -> str:
    return f"{value:g}s" if value < 120 else f"{value / 60:g}m"


def _bytes(value: int) -> str:
    for unit, size in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value}B"


def killed_error(message: str | None) -> UserError:
    text = f"Message: {message}" if message else "No message provided."
    return UserError(f"Query killed. {text}", error_name="ADMINISTRATIVELY_KILLED")


class WorkloadManager:
    def __init__(self, *, store: WorkloadStore, slots: SlotPool, metrics: Metrics, access: Access,
                 budget: BudgetHook | None = None) -> None:
        self.store = store
        self.slots = slots
        self.metrics = metrics
        self.access = access
        self.budget = budget  # the cost capability's seam; None: no budgets
        self._admissions: dict[str, Admission] = {}
        self._background: set[asyncio.Task[Any]] = set()
        slots.on_kill = self._kill_from_peer

    # -- the stage -----------------------------------------------------------------------------------------

    def enter(self, request: AdmissionRequest, kill: Kill) -> Admission:
        policy = self.store.current
        identity = request.identity
        facts = QueryFacts(user=identity.user, groups=identity.groups, source=request.source,
                           client_tags=request.client_tags, query_type=request.query_type)
        group = select_group(policy, facts)
        if group is None:
            self.metrics.workload_rejections.labels("", "no_group").inc()
            raise UserError("Query did not match any resource group selector", error_name="QUERY_REJECTED")
        if self.budget is not None:
            decision = self.budget.decide(identity, group)
            if isinstance(decision, Block):
                self.metrics.workload_rejections.labels(group.name, "budget").inc()
                raise UserError(decision.reason, error_name="QUERY_REJECTED")
            if isinstance(decision, Demote):
                demoted = policy.group(decision.group)
                if demoted is None:  # fail closed: a throttle to a group that does not exist blocks
                    self.metrics.workload_rejections.labels(group.name, "budget").inc()
                    raise UserError(f"{decision.reason} (resource group '{decision.group}' does not exist)",
                                    error_name="QUERY_REJECTED")
                log.info("query %s demoted from %s to %s: %s", request.query_id, group.name, demoted.name,
                         decision.reason)
                group = demoted
        ticket = Ticket(id=request.query_id, user=identity.user, group=group,
                        total_limit=policy.max_total_concurrency)
        admission = Admission(request=request, ticket=ticket, kill=kill)
        self._admissions[request.query_id] = admission
        return admission

    async def wait(self, admission: Admission, waiting: Awaitable[T]) -> T:
        """Await `waiting` (the result of an identical query running already) as a queued query of the
        admission's group: listed as QUEUED, counted in `gateway_workload_queued`, and failed with
        EXCEEDED_TIME_LIMIT after the group's `queue_timeout`. Holds no slot; `admit` may follow."""
        group = admission.group
        admission.state = "QUEUED"
        queued = self.metrics.workload_queued.labels(group.name)
        queued.inc()
        try:
            async with asyncio.timeout(group.queue_timeout):
                return await waiting
        except TimeoutError:
            self.metrics.workload_rejections.labels(group.name, "queue_timeout").inc()
            raise self._queue_timeout(group) from None
        finally:
            queued.dec()
            if admission.state == "QUEUED":
                admission.state = "NEW"

    def _queue_timeout(self, group: ResourceGroup) -> InsufficientResources:
        return InsufficientResources(
            f"Query exceeded the queue timeout of {_seconds(group.queue_timeout or 0)} of resource group "
            f"'{group.name}'", error_name="EXCEEDED_TIME_LIMIT")

    async def admit(self, admission: Admission, estimate: Estimate | None = None) -> None:
        """Return when the query may start; raise when it must not."""
        group = admission.group
        if group.max_scan_bytes is not None and estimate is not None:
            estimated = await estimate()
            if estimated is not None and estimated > group.max_scan_bytes:
                self.metrics.workload_rejections.labels(group.name, "scan_limit").inc()
                raise InsufficientResources(
                    f"Query would scan about {_bytes(estimated)}, more than the {_bytes(group.max_scan_bytes)} "
                    f"max_scan_bytes of resource group '{group.name}'", error_name="EXCEEDED_SCAN_LIMIT")
        if admission.state != "NEW":
            return  # left (cancelled) while estimating
        admission.state = "QUEUED"
        queued = self.metrics.workload_queued.labels(group.name)
        queued.inc()
        try:
            async with asyncio.timeout(group.queue_timeout):
                await self.slots.acquire(admission.ticket)
        except TimeoutError:
            self.metrics.workload_rejections.labels(group.name, "queue_timeout").inc()
            raise self._queue_timeout(group) from None
        except InsufficientResources:
            self.metrics.workload_rejections.labels(group.name, "queue_full").inc()
            raise
        finally:
            queued.dec()
        if admission.state != "QUEUED":  # left while the slot was being granted
            self.slots.release(admission.ticket)
            return
        admission.state = "RUNNING"
        self.metrics.workload_running.labels(group.name).inc()
        self.metrics.workload_queue_wait.labels(group.name).observe(admission.queued_seconds)
        if group.max_execution_time is not None:
            admission.timer = asyncio.get_running_loop().call_later(
                group.max_execution_time, self._execution_time_exceeded, admission)

    def leave(self, admission: Admission) -> None:
        """The query ended (any way): give back its slot or its place in the queue. Idempotent."""
        if admission.state == "DONE":
            return
        if admission.timer is not None:
            admission.timer.cancel()
        if admission.state == "RUNNING":
            self.metrics.workload_running.labels(admission.group.name).dec()
        if admission.ticket.admitted_at is None:  # it never ran: its queue wait ends now
            admission.ticket.admitted_at = time.monotonic()
        admission.state = "DONE"
        self.slots.release(admission.ticket)
        self._admissions.pop(admission.request.query_id, None)

    def result_rows_exceeded(self, admission: Admission) -> GatewayError:
        group = admission.group
        self.metrics.workload_kills.labels(group.name, "result_rows").inc()
        return InsufficientResources(
            f"Query exceeded the maximum of {group.max_result_rows} result rows of resource group '{group.name}' "
            f"(max_result_rows); add a LIMIT or aggregate", error_name="EXCEEDED_RESULT_ROWS_LIMIT")

    def _execution_time_exceeded(self, admission: Admission) -> None:
        if admission.state != "RUNNING":
            return
        group = admission.group
        self.metrics.workload_kills.labels(group.name, "execution_time").inc()
        error = InsufficientResources(
            f"Query exceeded the maximum execution time of {_seconds(group.max_execution_time or 0)} of resource "
            f"group '{group.name}'", error_name="EXCEEDED_TIME_LIMIT")
        self._spawn(admission.kill(error))

    # -- admin ---------------------------------------------------------------------------------------------

    def is_admin(self, identity: Identity) -> bool:
        return self.access.is_workload_admin(identity)

    def may_manage(self, identity: Identity, owner: str) -> bool:
        """The kill rule: your own queries, or anyone's if you are in `workload.admin_groups`."""
        return self.access.may_manage_query(identity, owner)

    async def kill(self, query_id: str, message: str | None, by: Identity) -> None:
        admission = self._admissions.get(query_id)
        if admission is not None:
            if not self.may_manage(by, admission.request.identity.user):
                raise PermissionDenied(f"Cannot kill query {query_id} of another user")
            self.metrics.workload_kills.labels(admission.group.name, "killed").inc()
            log.warning("query %s killed by %s: %s", query_id, by.user, message or "no message")
            await admission.kill(killed_error(message))
            return
        for entry in await self.slots.cluster() or ():
            if entry.query_id == query_id:
                if not self.may_manage(by, entry.user):
                    raise PermissionDenied(f"Cannot kill query {query_id} of another user")
                self.metrics.workload_kills.labels(entry.group, "killed").inc()
                log.warning("query %s (replica %s) killed by %s: %s", query_id, entry.replica, by.user,
                            message or "no message")
                await self.slots.send_kill(entry.replica, query_id, message or "")
                return
        raise NotFound(f"Target query not found: {query_id}")

    def _kill_from_peer(self, query_id: str, message: str) -> None:
        admission = self._admissions.get(query_id)
        if admission is not None:  # the sending replica checked who may kill it
            self._spawn(admission.kill(killed_error(message or None)))

    async def snapshot(self, viewer: Identity) -> dict[str, Any]:
        """Running and queued queries per group, for `GET /api/queries` and `gateway queries`."""
        admin = self.is_admin(viewer)
        cluster = await self.slots.cluster()
        local = self.slots.counts()
        counts: dict[str, dict[str, int]] = {}
        if cluster is not None:
            for entry in cluster:
                bucket = counts.setdefault(entry.group, {"running": 0, "queued": 0})
                bucket["running" if entry.state == "RUNNING" else "queued"] += 1
        else:
            counts = {name: {"running": c.running, "queued": c.queued} for name, c in local.items()}
        policy = self.store.current
        groups = [{"name": g.name, "priority": g.priority, "max_concurrency": g.max_concurrency,
                   "max_queued": g.max_queued, **counts.get(g.name, {"running": 0, "queued": 0})}
                  for g in policy.groups]
        known = {g.name for g in policy.groups}
        groups += [{"name": name, **c} for name, c in sorted(counts.items()) if name not in known]
        now = time.monotonic()
        queries: list[dict[str, Any]] = []
        for admission in self._admissions.values():
            request = admission.request
            if not (admin or request.identity.user == viewer.user):
                continue
            started = admission.ticket.admitted_at
            queries.append({
                "query_id": request.query_id, "user": request.identity.user, "group": admission.group.name,
                "state": "RUNNING" if admission.state == "RUNNING" else "QUEUED", "source": request.source,
                "query_type": request.query_type, "queued_ms": round(admission.queued_seconds * 1000),
                "running_ms": round((now - started) * 1000) if started is not None else 0,
                "replica": None, **({"sql": request.sql[:1000]} if admin else {}),
            })
        mine = {q["query_id"] for q in queries} | set(self._admissions)
        for entry in cluster or ():
            if entry.query_id not in mine and (admin or entry.user == viewer.user):
                queries.append({"query_id": entry.query_id, "user": entry.user, "group": entry.group,
                                "state": entry.state, "replica": entry.replica})
        return {"scope": "cluster" if cluster is not None else "replica",
                "capacity": policy.max_total_concurrency, "policy_version": policy.version[:12],
                "groups": groups, "queries": queries}

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
