"""The interface every backend implements, and the values it hands back.

A backend receives SQL already rewritten and generated in its own dialect, and answers with typed columns
and batches of Python rows. It translates its engine's errors into `gateway.errors` where they arise.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.types import SqlType

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: SqlType
    nullable: bool = True
    comment: str | None = None
    remote_name: str | None = None  # the engine's own spelling, where it differs from `name` (lower case)


@dataclass(frozen=True, slots=True)
class Table:
    """One table or view of a backend's catalog."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    kind: str = "BASE TABLE"  # or "VIEW", as information_schema.tables.table_type says
    comment: str | None = None
    remote_name: tuple[str, str] | None = None  # the engine's (schema, table), where it differs (case)

    @property
    def renamed(self) -> bool:
        """Whether generated SQL must spell this table or any of its columns differently (quoted)."""
        return self.remote_name is not None or any(c.remote_name is not None for c in self.columns)


@dataclass(slots=True)
class ExecutionStats:
    """What the backend reports about one query; used for Trino stats (and later cost)."""

    rows: int = 0
    bytes: int = 0
    elapsed_seconds: float = 0.0
    cpu_seconds: float = 0.0
    backend_query_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Who a backend query runs for, for engines that can carry it (Trino's session user, source and client
    tags; Snowflake's QUERY_TAG). Never a secret: engines may log all of it."""

    user: str | None = None
    source: str | None = None
    client_tags: frozenset[str] = frozenset()
    query_id: str | None = None  # the gateway's query id, to find the backend query from the audit trail
    cost_center: str | None = None


class Execution(abc.ABC):
    """One backend query: `start` it, `fetch` until None; `cancel` at any time, from any task, also while
    `start` is still running (so a query can be stopped before it returns its first row)."""

    columns: tuple[Column, ...]
    stats: ExecutionStats

    @abc.abstractmethod
    async def start(self) -> None:
        """Run the statement until its column types are known."""

    @abc.abstractmethod
    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        """The next rows (at most `max_rows`), or None once the result is exhausted."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Stop the query on the backend and release what it holds. Safe to call more than once."""


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
        the query either way). `context`: who it runs for, for engines that pass it on."""

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

    async def estimate_scan_bytes(self, sql: str) -> int | None:
        """About how many bytes `sql` would read, from the engine's plan, without running it; None where the
        engine gives no estimate (the workload's `max_scan_bytes` is then not checked)."""
        return None

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise `BackendError` unless the backend answers a trivial query."""
