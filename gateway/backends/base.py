"""The interface every backend implements (the values it hands back are in `gateway.relations`).

A backend receives SQL already rewritten and generated in its own dialect, and answers with typed columns
and batches of Python rows. It translates its engine's errors into `gateway.errors` where they arise.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence

from gateway.relations import Column, Execution, ExecutionContext, ExecutionStats, Row, Table

__all__ = ["Backend", "Column", "Execution", "ExecutionContext", "ExecutionStats", "PrefetchingExecution", "Row",
           "Table"]


class PrefetchingExecution(Execution):
    """The shape every engine's execution shares: `start` runs the statement and reads the first rows in the
    same round trip (a dashboard's small result then costs one), `fetch` hands those out first and then
    reads on, page by page, until the engine's result is exhausted. An engine supplies `_exhausted` and
    `_read_more`; the elapsed time is kept here."""

    def __init__(self, query_id: str) -> None:
        self.columns = ()
        self.stats = ExecutionStats(backend_query_id=query_id)
        self._prefetched: list[Row] | None = None
        self._started = time.perf_counter()

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        if self._prefetched is not None:
            prefetched, self._prefetched = self._prefetched, None
            if prefetched:
                return prefetched
        if self._exhausted():
            return None
        try:
            return await self._read_more(max_rows)
        finally:
            self._clock()

    def _clock(self) -> None:
        self.stats.elapsed_seconds = time.perf_counter() - self._started

    @abc.abstractmethod
    def _exhausted(self) -> bool:
        """No more rows can come (read to the end, or the engine side is closed)."""

    @abc.abstractmethod
    async def _read_more(self, max_rows: int) -> Sequence[Row] | None:
        """The next rows after the prefetched ones, at most `max_rows`; None at the end."""


class Backend(abc.ABC):
    """A catalog served by one engine."""

    #: sqlglot dialect the backend's SQL is generated in
    dialect: str

    def __init__(self, *, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    async def start(self) -> None:
        """Open connections (and prepare data, for embedded engines)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def execution(self, sql: str, *, time_limit_seconds: float | None = None,
                  context: ExecutionContext | None = None) -> Execution:
        """An execution of `sql`, not yet started. `time_limit_seconds`: the resource group's
        max_execution_time, for engines that can enforce it themselves (the gateway's own timer cancels
        the query either way). `context`: who it runs for, for engines that label queries (others ignore it)."""

    @abc.abstractmethod
    async def tables(self) -> list[Table]:
        """Every table and view the backend offers, for the gateway's catalog."""

    @property
    def sql_catalog(self) -> str | None:
        """The engine's own name for the catalog the gateway calls `name` (DuckDB: the database name), used
        to fully qualify tables in generated SQL; None where the engine has a single catalog."""
        return None

    @property
    def busy_threads(self) -> int:
        """Gateway threads currently working inside the engine (embedded engines; 0 for remote ones)."""
        return 0

    async def describe(self, sql: str, *, context: ExecutionContext | None = None) -> tuple[Column, ...]:
        """The result columns `sql` would have (names and types as its execution reports them), without
        executing it. An engine with a planning-only way to learn them (a prepared statement's description)
        overrides this; the fallback runs the query wrapped to return no rows (`LIMIT 0`), which engines
        answer from the plan without reading data."""
        execution = self.execution(f"SELECT * FROM ({sql}) AS described LIMIT 0", context=context)
        try:
            await execution.start()
            return execution.columns
        finally:
            await execution.cancel()

    async def estimate_scan_bytes(self, sql: str) -> int | None:
        """About how many bytes `sql` would read, from the engine's plan, without running it; None where the
        engine gives no estimate (the workload's `max_scan_bytes` is then not checked)."""
        return None

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise `BackendError` unless the backend answers a trivial query."""
