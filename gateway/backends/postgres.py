"""PostgreSQL through asyncpg: queries run in read-only transactions, rows stream through a server cursor.

Used for the audit store's `gateway` catalog (and ready for warehouse catalogs). Connections come from a
pool created at the first query, so the backend starts while the server is down. PostgreSQL errors are
translated by SQLSTATE where they enter.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from gateway import types as t
from gateway.backends.base import Backend, Column, Execution, ExecutionStats, Row, Table
from gateway.errors import BackendError, GatewayError, NotFound, PermissionDenied, QueryCanceled, UserError

PREFETCH_ROWS = 1024

_TYPES = {
    "int8": t.BIGINT, "int4": t.INTEGER, "int2": t.SMALLINT, "float8": t.DOUBLE, "float4": t.REAL,
    "numeric": t.DOUBLE, "bool": t.BOOLEAN, "text": t.VARCHAR, "varchar": t.VARCHAR, "bpchar": t.VARCHAR,
    "name": t.VARCHAR, "json": t.VARCHAR, "jsonb": t.VARCHAR, "uuid": t.UUID, "date": t.DATE, "bytea": t.VARBINARY,
    "timestamptz": t.timestamp(6, with_time_zone=True), "timestamp": t.timestamp(6),
}

_SQLSTATE_NAMES = {"42601": "SYNTAX_ERROR", "42703": "COLUMN_NOT_FOUND", "42883": "FUNCTION_NOT_FOUND",
                   "22012": "DIVISION_BY_ZERO", "42804": "TYPE_MISMATCH", "22P02": "INVALID_CAST_ARGUMENT"}

CONNECTION_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                     asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, TimeoutError)


def translate_error(error: BaseException) -> GatewayError:
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", "") or ""
        message = str(error)
        if state == "57014":
            return QueryCanceled("Query was canceled")
        if state == "42P01":
            return NotFound(message, error_name="TABLE_NOT_FOUND")
        if state == "42501":
            return PermissionDenied(message)
        if state in _SQLSTATE_NAMES:
            return UserError(message, error_name=_SQLSTATE_NAMES[state])
        if state.startswith(("22", "42")):
            return UserError(message)
        return BackendError(message)
    return BackendError(f"PostgreSQL is unavailable ({type(error).__name__})")


def _convert(kind: t.SqlType) -> Any:
    if kind == t.DOUBLE:
        return lambda v: float(v) if isinstance(v, Decimal) else v
    if kind == t.VARCHAR:
        return lambda v: v if v is None or isinstance(v, str) else str(v)
    return None


class PostgresBackend(Backend):
    dialect = "postgres"

    def __init__(self, *, name: str, dsn: str, tables: Sequence[Table], pool_size: int = 4) -> None:
        super().__init__(name=name)
        self._dsn = dsn
        self._tables = list(tables)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._ids = itertools.count(1)

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=self._pool_size,
                                                       command_timeout=None, timeout=10)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
                raise translate_error(error) from None
        return self._pool

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def execution(self, sql: str) -> Execution:
        return PostgresExecution(self, sql, f"{self.name}-{next(self._ids)}")

    async def tables(self) -> list[Table]:
        return list(self._tables)

    async def ping(self) -> None:
        execution = self.execution("SELECT 1")
        await execution.start()
        await execution.cancel()


class PostgresExecution(Execution):
    def __init__(self, backend: PostgresBackend, sql: str, query_id: str) -> None:
        self._backend = backend
        self._sql = sql
        self._connection: Any = None
        self._transaction: Any = None
        self._cursor: Any = None
        self._converters: list[Any] = []
        self._prefetched: list[Row] | None = None
        self._busy = False
        self._done = False
        self._started = time.perf_counter()
        self.columns = ()
        self.stats = ExecutionStats(backend_query_id=query_id)

    async def start(self) -> None:
        pool = await self._backend.pool()
        self._busy = True
        try:
            self._connection = await pool.acquire()
            self._transaction = self._connection.transaction(readonly=True)
            await self._transaction.start()
            statement = await self._connection.prepare(self._sql)
            kinds = [_TYPES.get(a.type.name, t.VARCHAR) for a in statement.get_attributes()]
            self.columns = tuple(Column(a.name, k) for a, k in zip(statement.get_attributes(), kinds, strict=True))
            self._converters = [_convert(k) for k in kinds]
            self._cursor = await statement.cursor()
            self._prefetched = await self._read(PREFETCH_ROWS) or []
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
            await self._release(broken=True)
            raise translate_error(error) from None
        finally:
            self._busy = False
        self.stats.elapsed_seconds = time.perf_counter() - self._started

    async def _read(self, max_rows: int) -> list[Row] | None:
        records = await self._cursor.fetch(max_rows)
        converters = self._converters
        rows: list[Row] = [tuple(c(v) if c is not None else v for c, v in zip(converters, r, strict=True))
                           for r in records]
        self.stats.rows += len(rows)
        if len(rows) < max_rows:
            await self._release(broken=False)
        return rows or None

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        if self._prefetched is not None:
            prefetched, self._prefetched = self._prefetched, None
            if prefetched:
                return prefetched
        if self._done or self._connection is None:
            return None
        self._busy = True
        try:
            return await self._read(max_rows)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
            await self._release(broken=True)
            raise translate_error(error) from None
        finally:
            self._busy = False
            self.stats.elapsed_seconds = time.perf_counter() - self._started

    async def _release(self, *, broken: bool) -> None:
        self._done = True
        connection, self._connection = self._connection, None
        if connection is None:
            return
        pool = self._backend._pool
        if broken or pool is None:
            connection.terminate()
            if pool is not None:
                await pool.release(connection)
            return
        try:
            await self._transaction.rollback()
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            connection.terminate()
        await pool.release(connection)

    async def cancel(self) -> None:
        if self._done:
            return
        # A call in progress is stopped by dropping its connection; the pool opens a fresh one later.
        await self._release(broken=self._busy)
