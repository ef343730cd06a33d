"""DuckDB, embedded: the demo warehouse and the engine behind the gateway's own metadata tables.

DuckDB calls block, so each query runs on a worker thread with its own cursor; one slow query never blocks
the event loop or other queries. User queries run with external access off (no files, no extensions, no
settings changes), on a database opened read-only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import duckdb

from gateway import types as t
from gateway.backends.base import Backend, PrefetchingExecution
from gateway.backends.duckdb_messages import trino_message
from gateway.errors import BackendError, GatewayError, InsufficientResources, NotFound, QueryCanceled, UserError
from gateway.relations import Column, Execution, ExecutionContext, Row, Table

T = TypeVar("T")

PREFETCH_ROWS = 1024
PREFETCH_PROBE_ROWS = 16  # read first, to size the rest of the prefetch by bytes
PREFETCH_BYTES = 4 * 1024 * 1024  # the prefetch stops short of 1024 rows when they would be larger than this

LOCKED_DOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}

_SIMPLE_TYPES = {
    "boolean": t.BOOLEAN,
    "tinyint": t.TINYINT,
    "smallint": t.SMALLINT,
    "integer": t.INTEGER,
    "bigint": t.BIGINT,
    "utinyint": t.SMALLINT,
    "usmallint": t.INTEGER,
    "uinteger": t.BIGINT,
    "ubigint": t.decimal(20, 0),
    "hugeint": t.decimal(38, 0),
    "uhugeint": t.decimal(38, 0),
    "float": t.REAL,
    "double": t.DOUBLE,
    "varchar": t.VARCHAR,
    "enum": t.VARCHAR,
    "blob": t.VARBINARY,
    "bit": t.VARCHAR,
    "date": t.DATE,
    "time": t.time(6),
    "time_ns": t.time(9),
    "time with time zone": t.time(6, with_time_zone=True),
    "timestamp": t.timestamp(6),
    "timestamp_s": t.timestamp(0),
    "timestamp_ms": t.timestamp(3),
    "timestamp_ns": t.timestamp(9),
    "timestamp with time zone": t.timestamp(6, with_time_zone=True),
    "timestamptz_ns": t.timestamp(9, with_time_zone=True),  # DuckDB: timestamp_ns AT TIME ZONE ...
    "interval": t.INTERVAL_DAY_TO_SECOND,
    "uuid": t.UUID,
    "json": t.JSON,
    "null": t.UNKNOWN,
    '"null"': t.UNKNOWN,
}


def to_sql_type(duck: Any) -> t.SqlType:
    """DuckDB's type -> the Trino type clients see."""
    kind = duck.id
    if kind == "varchar" and str(duck) == "JSON":  # json is an alias of varchar in DuckDB
        return t.JSON
    if kind in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[kind]
    if kind == "decimal":
        arguments = dict(duck.children)
        return t.decimal(int(arguments["precision"]), int(arguments["scale"]))
    if kind in ("list", "array"):
        return t.array(to_sql_type(dict(duck.children)["child"]))
    if kind == "map":
        children = dict(duck.children)
        return t.map_of(to_sql_type(children["key"]), to_sql_type(children["value"]))
    if kind == "struct":
        # sqlglot names the fields of an anonymous ROW(...) _0, _1, ...: Trino shows them without names
        return t.row([("" if name == f"_{i}" else name, to_sql_type(child))
                      for i, (name, child) in enumerate(duck.children)])
    return t.VARCHAR if kind == "union" else t.UNKNOWN


_LOCATION = re.compile(r"\n\s*LINE \d+:.*", re.DOTALL)
_ENGINE_KIND = re.compile(r"^[A-Z][A-Za-z ]{0,40} Error: ")  # "Binder Error: ": the error name says it
_QUOTED_VALUE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_NUMBERS_IN_PARENS = re.compile(r"\([^()]*\d[^()]*\)")
# Errors raised while evaluating expressions on rows: the engine may evaluate a user's predicate on rows a
# row filter removes (it reorders filters), so the values these messages quote could come from those rows.
_VALUE_ERRORS = (duckdb.ConversionException, duckdb.OutOfRangeException, duckdb.InvalidInputException)


def _redact_values(message: str) -> str:
    return _NUMBERS_IN_PARENS.sub("(…)", _QUOTED_VALUE.sub("'…'", message))


def translate_error(error: duckdb.Error) -> GatewayError:
    """DuckDB's exception -> the gateway's, without the SQL excerpt DuckDB appends (it would show the
    rewritten statement, policy filters included) and without row values quoted by evaluation errors."""
    message = _ENGINE_KIND.sub("", _LOCATION.sub("", str(error)).strip())
    if isinstance(error, _VALUE_ERRORS):
        message = _redact_values(message)
    if isinstance(error, duckdb.InterruptException):
        return QueryCanceled("Query was canceled")
    if isinstance(error, duckdb.OutOfMemoryException):
        return InsufficientResources("The query needs more memory than the backend's memory_limit allows; "
                                     "filter or aggregate more, or ask for a larger limit",
                                     error_name="EXCEEDED_LOCAL_MEMORY_LIMIT")
    name, message = trino_message(message)
    if name is not None:
        return UserError(message, error_name=name)
    if isinstance(error, duckdb.CatalogException):
        return NotFound(message, error_name="TABLE_NOT_FOUND" if "Table" in message else "NOT_FOUND")
    if isinstance(error, duckdb.BinderException):
        name = "COLUMN_NOT_FOUND" if "not found" in message.lower() else "GENERIC_USER_ERROR"
        return UserError(message, error_name=name)
    if isinstance(error, duckdb.ParserException):
        return UserError(message, error_name="SYNTAX_ERROR")
    if isinstance(error, duckdb.ConversionException):
        return UserError(message, error_name="INVALID_CAST_ARGUMENT")
    if isinstance(error, duckdb.OutOfRangeException):
        return UserError(message, error_name="NUMERIC_VALUE_OUT_OF_RANGE")
    if isinstance(error, duckdb.InvalidInputException):
        return UserError(message, error_name="INVALID_FUNCTION_ARGUMENT")
    if isinstance(error, duckdb.PermissionException):
        return UserError(message, error_name="PERMISSION_DENIED")
    return BackendError(message)


class DuckDBEngine:
    """A DuckDB database plus the worker threads its queries run on."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, *, label: str, workers: int = 8) -> None:
        self._connection = connection
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"duckdb-{label}")
        self._ids = itertools.count(1)
        self._label = label
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._estimator = ScanEstimator()

    @property
    def busy_threads(self) -> int:
        """Worker threads inside DuckDB right now: the evidence that a cancelled query really stopped."""
        return self._busy

    def _tracked(self, function: Callable[[], T]) -> T:
        with self._busy_lock:
            self._busy += 1
        try:
            return function()
        finally:
            with self._busy_lock:
                self._busy -= 1

    async def run(self, function: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._tracked, function)

    def execution(self, sql: str, *,
                  setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> DuckDBExecution:
        """`setup` runs first on the query's own cursor (e.g. to create its temporary tables)."""
        return DuckDBExecution(self, sql, f"{self._label}-{next(self._ids)}", setup=setup)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._connection.cursor()

    async def describe(self, sql: str, *,
                       setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> tuple[Column, ...]:
        """The result columns of query `sql` without executing it. `setup` as for `execution`."""
        def bind() -> tuple[Column, ...]:
            cursor = self.cursor()
            try:
                if setup is not None:
                    setup(cursor)
                return describe_query(cursor, sql)
            finally:
                cursor.close()

        return await self.run(bind)

    async def tables(self) -> list[Table]:
        return await self.run(partial(on_new_cursor, self._connection, list_tables))

    async def estimate_scan_bytes(self, sql: str) -> int | None:
        estimator = self._estimator
        return await self.run(partial(on_new_cursor, self._connection,
                                      lambda cursor: estimator.estimate(cursor, sql)))

    async def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._connection.close()

    def retire(self, *, after_seconds: float = 60.0) -> None:
        """Close once queries that started on this engine have had time to end."""
        asyncio.get_running_loop().call_later(after_seconds, self.close)


class CursorQuery:
    """One query on its own cursor, driven by blocking calls from worker threads (the gateway's, or an engine
    process's). `cancel` may come from any thread: it interrupts a running call, and the cursor is closed by
    whichever side finishes last (DuckDB refuses to close a busy cursor)."""

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection], sql: str, *,
                 setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> None:
        self._new_cursor = cursor
        self._sql = sql
        self._setup = setup
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._in_call = False
        self.cpu_seconds = 0.0
        self.rows = 0

    def start(self) -> tuple[tuple[Column, ...], list[Row] | None]:
        """Run the statement and read its first rows in the same call: a small result (most dashboard queries)
        then costs one worker hop instead of three. The columns and those rows."""
        def run(cursor: duckdb.DuckDBPyConnection) -> tuple[tuple[Column, ...], list[Row] | None]:
            if self._setup is not None:
                self._setup(cursor)
            cursor.execute(self._sql)
            columns = tuple(Column(name=d[0], type=to_sql_type(d[1])) for d in cursor.description or [])
            return columns, (self._prefetch(cursor) if cursor.description else None)

        return self._call(run)

    def read(self, max_rows: int) -> list[Row] | None:
        """The next rows, at most `max_rows`; None at the end."""
        return self._call(lambda cursor: self._fetch_rows(cursor, max_rows))

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._closed and self._cursor is None  # not cancelled: a cancelled query has its error

    def cancel(self) -> bool:
        """Stop the query. True when an idle cursor is left for the caller to close (`close_cursor`, on a
        worker thread: closing may block); a running call is interrupted and closes it itself."""
        with self._lock:
            already = self._closed
            self._closed = True
            cursor, busy = self._cursor, self._in_call
        if already or cursor is None:
            return False
        if busy:
            cursor.interrupt()  # thread-safe: the worker's call ends with InterruptException, then closes
            return False
        return True

    def close_cursor(self) -> None:
        with self._lock:
            cursor, self._cursor = self._cursor, None
        if cursor is not None:
            cursor.close()

    def _call(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`work` on the cursor, unless the query was cancelled."""
        with self._lock:
            if self._closed:
                raise QueryCanceled("Query was canceled")
            if self._cursor is None:
                self._cursor = self._new_cursor()
            cursor = self._cursor
            self._in_call = True
        began = time.thread_time()
        try:
            return work(cursor)
        except duckdb.Error as error:
            with self._lock:
                self._closed = True
            raise translate_error(error) from None
        except (OverflowError, ValueError) as error:  # a value DuckDB cannot turn into a Python object
            with self._lock:
                self._closed = True
            raise UserError(f"A value in the result is outside the range Trino clients can read "
                            f"({type(error).__name__}); filter it out or cast it to varchar",
                            error_name="NUMERIC_VALUE_OUT_OF_RANGE") from None
        finally:
            self.cpu_seconds += time.thread_time() - began
            with self._lock:
                self._in_call = False
                close_now = self._closed
            if close_now:
                self.close_cursor()

    def _prefetch(self, cursor: duckdb.DuckDBPyConnection) -> list[Row] | None:
        """The first rows: up to PREFETCH_ROWS, unless a few of them show that many would be wide (a thousand
        1 MB rows would be a gigabyte of Python objects before the frontend could refuse them)."""
        rows = self._fetch_rows(cursor, PREFETCH_PROBE_ROWS)
        if rows is None or len(rows) < PREFETCH_PROBE_ROWS:
            return rows
        if _size_of(rows) * PREFETCH_ROWS <= PREFETCH_BYTES * PREFETCH_PROBE_ROWS:
            rows.extend(self._fetch_rows(cursor, PREFETCH_ROWS - PREFETCH_PROBE_ROWS) or ())
        return rows

    def _fetch_rows(self, cursor: duckdb.DuckDBPyConnection, max_rows: int) -> list[Row] | None:
        rows = cursor.fetchmany(max_rows)
        if len(rows) < max_rows:  # DuckDB fills each fetchmany unless the result is exhausted
            with self._lock:
                self._closed = True
        self.rows += len(rows)
        return rows or None


class DuckDBExecution(PrefetchingExecution):
    """One query of an engine in this process: its `CursorQuery`'s calls run on the engine's worker threads."""

    def __init__(self, engine: DuckDBEngine, sql: str, query_id: str, *,
                 setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> None:
        super().__init__(query_id)
        self._engine = engine
        self._query = CursorQuery(engine.cursor, sql, setup=setup)

    async def start(self) -> None:
        try:
            self.columns, self._prefetched = await self._engine.run(self._query.start)
        finally:
            self._clock()

    def _clock(self) -> None:
        super()._clock()
        self.stats.rows = self._query.rows
        self.stats.cpu_seconds = self._query.cpu_seconds

    def _exhausted(self) -> bool:
        return self._query.exhausted

    async def _read_more(self, max_rows: int) -> Sequence[Row] | None:
        return await self._engine.run(lambda: self._query.read(max_rows))

    async def cancel(self) -> None:
        if self._query.cancel():
            await self._engine.run(self._query.close_cursor)


def _size_of(rows: Sequence[Row]) -> int:
    """Roughly the bytes of `rows`: text and binary by length, anything else as 8."""
    return sum(len(v) if isinstance(v, str | bytes) else 8 for row in rows for v in row)


def describe_tables(cursor: duckdb.DuckDBPyConnection, *, database: str) -> list[Table]:
    """Every user table and view of `database`, columns typed through a zero-row query (so types are read
    exactly as queries will see them)."""
    listing = cursor.execute(
        "SELECT schema_name, table_name, 'BASE TABLE', comment FROM duckdb_tables() "
        "WHERE database_name = ? AND NOT internal "
        "UNION ALL SELECT schema_name, view_name, 'VIEW', comment FROM duckdb_views() "
        "WHERE database_name = ? AND NOT internal ORDER BY 1, 2",
        [database, database],
    ).fetchall()
    comments = {
        (schema, table, column): comment
        for schema, table, column, comment in cursor.execute(
            "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() WHERE database_name = ?",
            [database],
        ).fetchall()
    }
    nullable = {
        (schema, table, column): is_nullable
        for schema, table, column, is_nullable in cursor.execute(
            "SELECT schema_name, table_name, column_name, is_nullable FROM duckdb_columns() "
            "WHERE database_name = ?",
            [database],
        ).fetchall()
    }
    tables = []
    for schema, name, kind, comment in listing:
        quoted = f'"{database}"."{schema}"."{name}"'.replace("\x00", "")
        described = cursor.execute(f"SELECT * FROM {quoted} LIMIT 0").description or []
        columns = tuple(
            Column(name=d[0], type=to_sql_type(d[1]), nullable=bool(nullable.get((schema, name, d[0]), True)),
                   comment=comments.get((schema, name, d[0])))
            for d in described
        )
        tables.append(Table(schema=schema, name=name, columns=columns, kind=kind, comment=comment))
    return tables


def on_new_cursor(connection: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`work` on a cursor of its own, closed after."""
    cursor = connection.cursor()
    try:
        return work(cursor)
    finally:
        cursor.close()


def describe_query(cursor: duckdb.DuckDBPyConnection, sql: str) -> tuple[Column, ...]:
    """The result columns of query `sql` without executing it: DuckDB binds a query into a relation, which
    runs only when its rows are asked for (never here)."""
    try:
        relation = cursor.sql(sql)
        if relation is None:  # DuckDB runs a statement that is not a query at once; the gateway plans none
            raise BackendError("only a query can be described")
        return tuple(Column(name=name, type=to_sql_type(kind))
                     for name, kind in zip(relation.columns, relation.types, strict=True))
    except duckdb.Error as error:
        raise translate_error(error) from None


def list_tables(cursor: duckdb.DuckDBPyConnection) -> list[Table]:
    """Every user table and view of the cursor's database."""
    database = cursor.execute("SELECT current_database()").fetchone()
    return describe_tables(cursor, database=str(database[0]) if database else "")


class ScanEstimator:
    """From `EXPLAIN (FORMAT JSON)`: for each table scan, the table's row count times the in-memory width of
    the columns it reads (strings count 16 bytes, DuckDB's string header, not their length). An upper estimate
    of what the scans touch: zone-map pruning may skip row groups, and joins multiply work without reading
    more bytes. None when DuckDB cannot explain the statement. Table sizes are read once (the database is
    opened read-only)."""

    def __init__(self) -> None:
        self._scan_widths: dict[str, tuple[int, dict[str, int]]] | None = None  # table -> (rows, column widths)

    def estimate(self, cursor: duckdb.DuckDBPyConnection, sql: str) -> int | None:
        try:
            if self._scan_widths is None:
                self._scan_widths = _scan_widths(cursor)
            rows = cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()
        except duckdb.Error:
            return None
        try:
            plan = json.loads(rows[0][1])
        except (IndexError, ValueError):
            return None
        return _scanned_bytes(plan, self._scan_widths)


class QueryEngine(Protocol):
    """What the backend needs of the engine its queries run on: `DuckDBEngine` (worker threads of this
    process) or `EngineProcess` (gateway/backends/duckdb_process.py: a process of its own)."""

    @property
    def busy_threads(self) -> int: ...

    def execution(self, sql: str) -> Execution: ...

    async def describe(self, sql: str) -> tuple[Column, ...]: ...

    async def tables(self) -> list[Table]: ...

    async def estimate_scan_bytes(self, sql: str) -> int | None: ...

    async def shutdown(self) -> None: ...


def connect_config(*, threads: int | None, memory_limit: int | None) -> dict[str, Any]:
    """The settings a user-query database is opened with: locked down, with the backend's bounds."""
    config: dict[str, Any] = dict(LOCKED_DOWN)
    if threads:
        config["threads"] = threads
    if memory_limit:
        # One buffer pool for every query of this backend (DuckDB has no per-query limit); a query that needs
        # more fails with EXCEEDED_LOCAL_MEMORY_LIMIT. Planning memory is outside it, which is why statements
        # are bounded before they reach the engine (gateway/sql/limits.py).
        config["memory_limit"] = f"{memory_limit // 1024}KiB"
    return config


def open_database(path: Path, config: dict[str, Any]) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """The read-only connection, and the database's own name (generated SQL names tables
    database.schema.table: with two parts DuckDB would read `x.t` as catalog x, table t whenever a database
    called x is attached)."""
    try:
        connection = duckdb.connect(str(path), read_only=True, config=config)
    except duckdb.Error as error:
        raise BackendError(f"cannot open DuckDB database {path}: {error}") from None
    row = connection.execute("SELECT current_database()").fetchone()
    return connection, (str(row[0]) if row else None)


class DuckDBBackend(Backend):
    dialect = "duckdb"

    def __init__(self, *, name: str, path: Path, threads: int | None = None, memory_limit: int | None = None,
                 prepare: Callable[[], None] | None = None, isolation: str = "thread") -> None:
        super().__init__(name=name)
        self._path = path
        self._threads = threads
        self._memory_limit = memory_limit
        self._prepare = prepare
        self._isolation = isolation
        self._engine: QueryEngine | None = None
        self._database: str | None = None

    @property
    def sql_catalog(self) -> str | None:
        return self._database

    @property
    def engine(self) -> QueryEngine:
        if self._engine is None:
            raise BackendError(f"backend {self.name!r} is not started")
        return self._engine

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._prepare is not None:
            await loop.run_in_executor(None, self._prepare)
        config = connect_config(threads=self._threads, memory_limit=self._memory_limit)
        if self._isolation == "process":
            from gateway.backends.duckdb_process import EngineProcess

            process = EngineProcess(self._path, config, label=self.name)
            self._database = await process.start()
            self._engine = process
            return
        connection, self._database = open_database(self._path, config)
        self._engine = DuckDBEngine(connection, label=self.name)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.shutdown()

    def execution(self, sql: str, *, time_limit_seconds: float | None = None,
                  context: ExecutionContext | None = None) -> Execution:
        return self.engine.execution(sql)

    async def describe(self, sql: str, *, context: ExecutionContext | None = None) -> tuple[Column, ...]:
        return await self.engine.describe(sql)

    @property
    def busy_threads(self) -> int:
        return self._engine.busy_threads if self._engine is not None else 0

    async def tables(self) -> list[Table]:
        return await self.engine.tables()

    async def estimate_scan_bytes(self, sql: str) -> int | None:
        return await self.engine.estimate_scan_bytes(sql)

    async def ping(self) -> None:
        execution = self.execution("SELECT 1")
        await execution.start()
        while await execution.fetch(10) is not None:
            pass


_WIDTHS = {"BOOLEAN": 1, "TINYINT": 1, "SMALLINT": 2, "INTEGER": 4, "DATE": 4, "FLOAT": 4, "BIGINT": 8,
           "DOUBLE": 8, "TIMESTAMP": 8, "TIME": 8, "HUGEINT": 16, "UUID": 16, "INTERVAL": 16, "VARCHAR": 16}


def _width(data_type: str) -> int:
    base = data_type.split("(")[0].strip().upper()
    if base == "DECIMAL":
        precision = int(re.findall(r"\d+", data_type)[0]) if re.findall(r"\d+", data_type) else 18
        return 2 if precision <= 4 else 4 if precision <= 9 else 8 if precision <= 18 else 16
    return _WIDTHS.get(base, 8)


def _scan_widths(cursor: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, dict[str, int]]]:
    """database.schema.table -> (estimated rows, {column: bytes per value})."""
    tables: dict[str, tuple[int, dict[str, int]]] = {}
    for database, schema, table, rows in cursor.execute(
            "SELECT database_name, schema_name, table_name, estimated_size FROM duckdb_tables()").fetchall():
        tables[f"{database}.{schema}.{table}".lower()] = (int(rows or 0), {})
    for database, schema, table, column, data_type in cursor.execute(
            "SELECT database_name, schema_name, table_name, column_name, data_type FROM duckdb_columns()").fetchall():
        entry = tables.get(f"{database}.{schema}.{table}".lower())
        if entry is not None:
            entry[1][column.lower()] = _width(str(data_type))
    return tables


def _scanned_bytes(nodes: Any, tables: dict[str, tuple[int, dict[str, int]]]) -> int:
    total = 0
    for node in nodes if isinstance(nodes, list) else [nodes]:
        info = node.get("extra_info") or {}
        table = tables.get(str(info.get("Table", "")).lower()) if isinstance(info, dict) else None
        if table is not None:
            rows, widths = table
            projections = info.get("Projections") or []
            columns = [projections] if isinstance(projections, str) else projections
            total += rows * sum(widths.get(str(c).lower(), 8) for c in columns)
        total += _scanned_bytes(node.get("children") or [], tables)
    return total
