"""Recent queries of this process, running and ended: what `GET /v1/query/{id}` and `system.runtime.queries`
answer from.

Running queries are held as their `QueryRun`; once one ends it is reduced to a `QuerySummary` (no plan, no
cursor, the SQL cut to `MAX_TEXT` characters) and kept for `keep_seconds`, at most `max_entries` of them, the
oldest dropped first. Who may see an entry is decided here too, as everywhere else in the gateway: the
authenticated principal that submitted it, or a member of `workload.admin_groups`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gateway.access import Access
from gateway.errors import GatewayError
from gateway.identity import Identity

if TYPE_CHECKING:
    from gateway.pipeline import QueryRun

MAX_TEXT = 16 * 1024  # characters of SQL kept per ended query


@dataclass(frozen=True)
class QuerySummary:
    query_id: str
    state: str
    principal: str  # who authenticated and submitted it: its owner
    user: str  # who it ran as (differs under impersonation)
    source: str | None
    catalog: str | None
    schema: str | None
    sql: str
    created: datetime
    ended: datetime | None
    queued_ms: int
    elapsed_ms: int
    cpu_ms: int
    rows: int
    bytes: int
    resource_group: str | None
    error: GatewayError | None


def summarize(run: QueryRun, created: datetime) -> QuerySummary:
    stats = run.stats
    elapsed = run.elapsed_seconds
    ended = created + timedelta(seconds=elapsed) if run.done else None
    return QuerySummary(
        query_id=run.query_id, state=run.state.value, principal=run.principal.user, user=run.session.user,
        source=run.session.source, catalog=run.session.catalog, schema=run.session.schema,
        sql=run.sql[:MAX_TEXT], created=created, ended=ended, queued_ms=int(run.queued_seconds * 1000),
        elapsed_ms=int(elapsed * 1000), cpu_ms=int(stats.cpu_seconds * 1000), rows=stats.rows, bytes=stats.bytes,
        resource_group=run.admission.group.name if run.admission is not None else None, error=run.error)


class QueryHistory:
    def __init__(self, *, max_entries: int = 1000, keep_seconds: float = 900.0,
                 access: Access) -> None:
        self.max_entries = max_entries
        self.keep_seconds = keep_seconds
        self.access = access
        self._running: dict[str, tuple[datetime, QueryRun]] = {}
        self._ended: OrderedDict[str, tuple[float, QuerySummary]] = OrderedDict()

    def add(self, run: QueryRun) -> None:
        self._sweep()
        self._running[run.query_id] = (datetime.now(UTC), run)

    def may_see_owner(self, identity: Identity, owner: str) -> bool:
        """The one rule for every per-query request: the query's owner, or an admin."""
        return self.access.may_manage_query(identity, owner)

    def may_see(self, identity: Identity, summary: QuerySummary) -> bool:
        return self.may_see_owner(identity, summary.principal)

    def get(self, query_id: str, viewer: Identity) -> QuerySummary | None:
        """The query as `viewer` may see it: None when it is unknown, expired, or someone else's."""
        self._sweep()
        running = self._running.get(query_id)
        if running is not None:
            summary = summarize(running[1], running[0])
        else:
            entry = self._ended.get(query_id)
            if entry is None:
                return None
            summary = entry[1]
        return summary if self.may_see(viewer, summary) else None

    def holds(self, query_id: str) -> bool:
        """Whether this process answers for the query (whoever asks)."""
        return query_id in self._running or query_id in self._ended

    def ids(self) -> list[str]:
        return [*self._running, *self._ended]

    def visible_to(self, viewer: Identity) -> list[QuerySummary]:
        self._sweep()
        summaries = [summarize(run, created) for created, run in self._running.values()]
        summaries.extend(summary for _, summary in self._ended.values())
        return [s for s in summaries if self.may_see(viewer, s)]

    def _sweep(self) -> None:
        now = time.monotonic()
        for query_id in [q for q, (_, run) in self._running.items() if run.done]:
            created, run = self._running.pop(query_id)
            self._ended[query_id] = (now, summarize(run, created))
        while self._ended:
            _, (ended, _summary) = next(iter(self._ended.items()))
            if now - ended <= self.keep_seconds and len(self._ended) <= self.max_entries:
                break
            self._ended.popitem(last=False)
