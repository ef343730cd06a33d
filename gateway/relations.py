"""The shapes of data every layer passes around: columns, tables, rows and result streams.

Backends produce them, the planner and the cache compute with them, frontends encode them. They live here,
apart from all three, so no layer has to import another one's module to name a row.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Who a backend query runs for, for engines that can carry it (Trino's session user, source and client
    tags; Snowflake's QUERY_TAG): the gateway's query id, the identity it runs as, the client's source and tags,
    and the cost center it is charged to. Never holds a secret: engines may log all of it."""

    query_id: str
    user: str
    source: str | None
    client_tags: tuple[str, ...]
    cost_center: str | None


@dataclass(slots=True)
class ExecutionStats:
    """What the backend reports about one query; used for Trino stats and cost."""

    rows: int = 0
    bytes: int = 0
    elapsed_seconds: float = 0.0
    cpu_seconds: float = 0.0
    backend_query_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Execution(abc.ABC):
    """One result stream: `start` it, `fetch` until None; `cancel` at any time, from any task, also while
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


class SqlTarget(Protocol):
    """What the planner needs to know of the engine a statement is generated for (a backend is one)."""

    @property
    def dialect(self) -> str: ...

    @property
    def sql_catalog(self) -> str | None: ...
