"""SQLite, read-only: one database file served as one schema of a catalog (the embedded audit store).

Each query gets its own connection on a worker thread: an in-memory main database with the file attached
read-only under the schema's name, so generated `schema.table` names resolve, and `query_only` on. SQLite's
columns have no fixed types: a table's columns are typed by their declared types; a result's by its values.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway import types as t
from gateway.backends.base import Backend, PrefetchingExecution
from gateway.errors import BackendError, GatewayError, NotFound, QueryCanceled, UserError
from gateway.relations import Column, Execution, ExecutionContext, Row, Table

T = TypeVar("T")

PREFETCH_ROWS = 1024

_DECLARED = {"INTEGER": t.BIGINT, "REAL": t.DOUBLE, "TEXT": t.VARCHAR, "BOOLEAN": t.BOOLEAN, "BLOB": t.VARBINARY}

sqlite3.register_converter("BOOLEAN", lambda raw: raw not in (b"0", b""))


def _value_type(values: Sequence[Any]) -> t.SqlType:
    for value in values:
        if isinstance(value, bool):
            return t.BOOLEAN
        if isinstance(value, int):
            return t.BIGINT
        if isinstance(value, float):
            return t.DOUBLE
        if isinstance(value, bytes):
            return t.VARBINARY
        if value is not None:
            return t.VARCHAR
    return t.VARCHAR


def translate_error(error: sqlite3.Error) -> GatewayError:
    message = str(error)
    if isinstance(error, sqlite3.OperationalError):
        if message == "interrupted":
            return QueryCanceled("Query was canceled")
        if message.startswith("no such table"):
            return NotFound(message, error_name="TABLE_NOT_FOUND")
        if message.startswith("no such column"):
            return UserError(message, error_name="COLUMN_NOT_FOUND")
        if message.startswith("no such function"):
            return UserError(message, error_name="FUNCTION_NOT_FOUND")
        if "syntax error" in message:
            return UserError(message, error_name="SYNTAX_ERROR")
        if "unable to open" in message or "locked" in message or "disk" in message:
            return BackendError(message)
        return UserError(message)
    return BackendError(message)


class SQLiteBackend(Backend):
    dialect = "sqlite"

    def __init__(self, *, name: str, path: Path, schema: str, tables: Sequence[Table] | None = None,
                 workers: int = 4) -> None:
        """`tables`: what the catalog shows, when known in advance (else read from the file); the file is
        attached under `schema` and under every schema these tables name."""
        super().__init__(name=name)
        self.path = path
        self.schema = schema
        self._tables = list(tables) if tables is not None else None
        self._executor: ThreadPoolExecutor | None = None
        self._workers = workers
        self._ids = itertools.count(1)

    def connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect("file::memory:", uri=True, check_same_thread=False,
                                     detect_types=sqlite3.PARSE_DECLTYPES)
        try:
            uri = f"file:{self.path}?mode=ro"
            schemas = dict.fromkeys([self.schema, *(t.schema for t in self._tables or ())])
            for schema in schemas:  # one file may serve several schemas (gateway.audit, gateway.billing)
                connection.execute("ATTACH DATABASE ? AS " + _quote(schema), (uri,))
            connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error as error:
            connection.close()
            raise BackendError(f"cannot open the SQLite database of catalog {self.name!r}: {error}") from None
        return connection

    async def run(self, function: Callable[[], T]) -> T:
        if self._executor is None:
            raise BackendError(f"backend {self.name!r} is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"sqlite-{self.name}")

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def execution(self, sql: str, *, time_limit_seconds: float | None = None,
                  context: ExecutionContext | None = None) -> Execution:
        return SQLiteExecution(self, sql, f"{self.name}-{next(self._ids)}")

    async def tables(self) -> list[Table]:
        if self._tables is not None:
            return list(self._tables)

        def read() -> list[Table]:
            connection = self.connect()
            try:
                schema = _quote(self.schema)
                listing = connection.execute(
                    f"SELECT name, type FROM {schema}.sqlite_master WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
                tables = []
                for name, kind in listing:
                    info = connection.execute(f"PRAGMA {schema}.table_info({_quote(name)})").fetchall()
                    columns = tuple(Column(row[1], _DECLARED.get(str(row[2]).upper(), t.VARCHAR),
                                           nullable=not row[3]) for row in info)
                    tables.append(Table(schema=self.schema, name=name, columns=columns,
                                        kind="VIEW" if kind == "view" else "BASE TABLE"))
                return tables
            finally:
                connection.close()

        return await self.run(read)

    async def ping(self) -> None:
        await self.run(lambda: self.connect().close())


class SQLiteExecution(PrefetchingExecution):
    def __init__(self, backend: SQLiteBackend, sql: str, query_id: str) -> None:
        super().__init__(query_id)
        self._backend = backend
        self._sql = sql
        self._connection: sqlite3.Connection | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._lock = threading.Lock()
        self._canceled = False

    def _call(self, work: Callable[[sqlite3.Cursor], T]) -> T:
        with self._lock:
            if self._canceled:
                raise QueryCanceled("Query was canceled")
            if self._connection is None:
                self._connection = self._backend.connect()
                self._cursor = self._connection.cursor()
            cursor = self._cursor
        assert cursor is not None
        try:
            return work(cursor)
        except sqlite3.Error as error:
            self._close()
            raise translate_error(error) from None

    def _close(self) -> None:
        with self._lock:
            connection, self._connection, self._cursor = self._connection, None, None
        if connection is not None:
            connection.close()

    async def start(self) -> None:
        def run(cursor: sqlite3.Cursor) -> None:
            cursor.execute(self._sql)
            names = [d[0] for d in cursor.description or []]
            rows = self._fetch(cursor, PREFETCH_ROWS)
            self.columns = tuple(Column(name, _value_type([r[i] for r in rows or []])) for i, name in enumerate(names))
            self._prefetched = rows or []

        await self._backend.run(lambda: self._call(run))
        self._clock()

    def _fetch(self, cursor: sqlite3.Cursor, max_rows: int) -> list[Row] | None:
        rows = [tuple(r) for r in cursor.fetchmany(max_rows)]
        if len(rows) < max_rows:
            self._close()
        self.stats.rows += len(rows)
        return rows or None

    def _exhausted(self) -> bool:
        with self._lock:
            return self._connection is None

    async def _read_more(self, max_rows: int) -> Sequence[Row] | None:
        return await self._backend.run(lambda: self._call(lambda cursor: self._fetch(cursor, max_rows)))

    async def cancel(self) -> None:
        with self._lock:
            self._canceled = True
            connection = self._connection
        if connection is not None:
            connection.interrupt()  # thread-safe; a running step ends with "interrupted"
            await self._backend.run(self._close)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
