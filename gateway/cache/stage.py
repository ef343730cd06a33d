"""The cache stage of the query path: answer a planned query from the cache, or run it and keep its result.

    key_for(plan, session)     None when the query must not be cached: not deterministic, a metadata
                               query, DESCRIBE OUTPUT, or the client opted out (client tag `nocache` or
                               `SET SESSION result_cache = 'false'`)
    obtain(key, wait)          a cached result, or a lease to run the query as the leader of every identical
                               query that arrives meanwhile (coalescing), or None: run it, uncoalesced.
                               A follower waits through `wait` (the pipeline makes that a queued wait of its
                               resource group), at most once: released by a failed or stalled leader it runs
                               itself, leading only if nobody else does — so N released followers run at
                               once, never one after another
    recording(...)             the backend execution, wrapped so the complete result is cached when its
                               last row has been read, and the followers get it

Only whole results are cached; one larger than `max_entry_bytes` is streamed through and not kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.cache.key import cache_key
from gateway.cache.store import CachedResult, Leader, ResultCache, estimate_bytes
from gateway.errors import GatewayError
from gateway.planner import Plan
from gateway.relations import Execution, Row
from gateway.session import Session
from gateway.sql.resolve import METADATA_TARGET
from gateway.static_result import StaticExecution

BYPASS_TAG = "nocache"
BYPASS_PROPERTY = "result_cache"


@dataclass
class Lease:
    """The right (and duty) to run a query and publish its result to identical waiting queries."""

    key: str
    leader: Leader


def wants_cache(session: Session) -> bool:
    if BYPASS_TAG in session.client_tags:
        return False
    return session.properties.get(BYPASS_PROPERTY, "true").strip().lower() not in ("false", "off", "0", "no")


Outcome = CachedResult | GatewayError | None
Wait = Callable[[Awaitable[Outcome]], Awaitable[Outcome]]


class CacheStage:
    def __init__(self, cache: ResultCache | None, *, default_ttl: float = 300.0,
                 live_catalogs: frozenset[str] = frozenset(), stall_seconds: float = 2.0) -> None:
        self.cache = cache
        self.default_ttl = default_ttl
        # The gateway's own tables (audit records, the cost ledger): always read live, never copied to a cache.
        self.live_catalogs = live_catalogs | {METADATA_TARGET}
        self.stall_seconds = stall_seconds  # a leader idle on its client this long releases its followers

    def key_for(self, plan: Plan, session: Session) -> str | None:
        if (self.cache is None or plan.sql is None or plan.target is None or plan.target in self.live_catalogs
                or not plan.deterministic or plan.describe_output or not wants_cache(session)):
            return None
        return cache_key(backend_sql=plan.sql, target=plan.target, policy_version=plan.policy_version or "",
                         properties=(), grants=plan.grants)

    async def obtain(self, key: str, wait: Wait) -> CachedResult | Lease | None:
        """A cached (or coalesced) result, a lease to run the query, or None to run it uncoalesced; raises the
        leader's error when that is the statement's own."""
        cache = self.cache
        assert cache is not None
        leader = cache.leader_for(key)
        if leader is not None:
            outcome = await wait(cache.follow(leader, stall_seconds=self.stall_seconds))
            if isinstance(outcome, CachedResult):
                return outcome
            if isinstance(outcome, GatewayError):
                raise outcome.detached()
            current = cache.leader_for(key)
            if current is not None and current is not leader:
                return None  # another released follower leads now: run alongside it, never wait twice
        # Lead before the first await, so identical queries arriving from now on wait for this one (a stalled
        # leader is replaced: its own result is still cached when it completes).
        lease = Lease(key, cache.lead(key))
        hit = await cache.get(key)
        if hit is not None:
            cache.finish_leading(key, lease.leader, hit)
            return hit
        return lease

    def release(self, lease: Lease, result: CachedResult | GatewayError | None = None) -> None:
        """Let the queries waiting on `lease` go (with the result or the error, or to run themselves).
        Idempotent: the first release counts."""
        assert self.cache is not None
        self.cache.finish_leading(lease.key, lease.leader, result)

    def recording(self, execution: Execution, lease: Lease, *, ttl_seconds: float,
                  tables: tuple[str, ...]) -> RecordingExecution:
        assert self.cache is not None
        return RecordingExecution(execution, self, lease, ttl_seconds=ttl_seconds, tables=tables)


def from_cache(result: CachedResult) -> StaticExecution:
    return StaticExecution(columns=result.columns, rows=result.rows)


class RecordingExecution(Execution):
    """Passes rows through and keeps a copy (while small enough); caches the result when it is complete."""

    def __init__(self, inner: Execution, stage: CacheStage, lease: Lease, *, ttl_seconds: float,
                 tables: tuple[str, ...]) -> None:
        assert stage.cache is not None
        self._inner = inner
        self._stage = stage
        self._cache = stage.cache
        self._lease = lease
        self._ttl = ttl_seconds
        self._tables = tables
        self._rows: list[Row] | None = []
        self._bytes = 0
        self._released = False
        self.columns = inner.columns
        self.stats = inner.stats  # the inner execution updates it in place

    async def start(self) -> None:
        try:
            await self._inner.start()
        finally:
            self._lease.leader.working(False)
        self.columns = self._inner.columns

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        leader = self._lease.leader
        leader.working(True)
        try:
            rows = await self._inner.fetch(max_rows)
        except GatewayError as error:
            self._release(error)
            raise
        except BaseException:
            self._release(None)
            raise
        finally:
            leader.working(False)
        if rows is None:
            await self._complete()
            return None
        if self._rows is not None:
            self._bytes += estimate_bytes(rows)
            if self._bytes > self._cache.max_entry_bytes:
                self._rows = None  # too large to keep: stream it through, followers run their own
                self._release(None)
            else:
                self._rows.extend(rows)
        return rows

    async def _complete(self) -> None:
        result = None
        if self._rows is not None and not self._released:
            result = await self._cache.put(self._lease.key, columns=self.columns, rows=self._rows,
                                           ttl_seconds=self._ttl, tables=self._tables)
        self._release(result)

    def _release(self, result: CachedResult | GatewayError | None) -> None:
        if not self._released:
            self._released = True
            self._stage.release(self._lease, result)

    async def cancel(self) -> None:
        self._release(None)
        await self._inner.cancel()
