"""PostgreSQL through asyncpg: a warehouse catalog, and the engine behind the audit store's `gateway` catalog.

Each query holds one pooled connection for its lifetime, in a read-only transaction (a read-only role is the
real guarantee: the transaction mode only stops honest mistakes), with `statement_timeout` set from the
resource group's `max_execution_time`, and streams its rows through a server-side cursor. `cancel` asks the
server to stop the statement with `pg_cancel_backend` over a control connection of its own, so a running
query really ends on the server (dropping the socket would leave it running until it next writes).

The catalog comes from `pg_catalog` (tables, views, materialized views, foreign tables), folded to lower
case as Trino folds identifiers; a table whose real name is not lower case keeps it in `Table.remote_name`
so generated SQL quotes it. Connections are opened at the first query, so the gateway starts while the
server is down. Errors are translated by SQLSTATE where they enter; PostgreSQL's messages may quote values
of the rows they failed on, so evaluation errors lose their quoted values (as DuckDB's do).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from gateway.backends.base import Backend, PrefetchingExecution
from gateway.backends.credentials import Secret, SecretSource
from gateway.backends.postgres_types import converter, result_decimal, to_sql_type
from gateway.errors import (
    BackendError,
    BackendUnavailable,
    GatewayError,
    InsufficientResources,
    NotFound,
    PermissionDenied,
    QueryCanceled,
    UserError,
)
from gateway.metrics import Metrics
from gateway.relations import Column, Execution, ExecutionContext, Row, Table

log = logging.getLogger("gateway.backends.postgres")

PREFETCH_ROWS = 1024
PAGE_BYTES = 8192  # PostgreSQL's block size: EXPLAIN's buffer counts are blocks

_SQLSTATE_NAMES = {"42601": "SYNTAX_ERROR", "42703": "COLUMN_NOT_FOUND", "42883": "FUNCTION_NOT_FOUND",
                   "22012": "DIVISION_BY_ZERO", "42804": "TYPE_MISMATCH", "22P02": "INVALID_CAST_ARGUMENT",
                   "22003": "NUMERIC_VALUE_OUT_OF_RANGE", "25006": "READ_ONLY_VIOLATION"}
_QUOTED_VALUE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")

CONNECTION_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                     asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError, TimeoutError)
_ERRORS = (*CONNECTION_ERRORS, asyncpg.PostgresError)
# Refused logins, shutdowns, "too many connections": the server is not taking work, the statement is not at fault.
_UNAVAILABLE_STATES = ("28000", "28P01", "53300", "57P01", "57P02", "57P03")
_SCAN_NODES = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Tid Scan", "Tid Range Scan",
               "Foreign Scan", "Sample Scan", "Custom Scan")

_CATALOG_QUERY = """
SELECT n.nspname, c.relname, c.relkind::text, obj_description(c.oid, 'pg_class'),
       a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, col_description(c.oid, a.attnum)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND ($1::text[] IS NULL OR n.nspname = ANY($1::text[]))
ORDER BY n.nspname, c.relname, a.attnum
"""


def translate_error(error: BaseException, *, timed_out_after: float | None = None) -> GatewayError:
    """asyncpg's exception -> the gateway's. `timed_out_after`: the statement_timeout in force, so a server
    timeout reads as the resource group's limit rather than as a cancellation."""
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", "") or ""
        message = str(error)
        if state == "57014":
            if timed_out_after is not None and "statement timeout" in message:
                return InsufficientResources(f"Query exceeded the maximum execution time of {timed_out_after:g}s",
                                             error_name="EXCEEDED_TIME_LIMIT")
            return QueryCanceled("Query was canceled")
        if state.startswith("22"):
            message = _QUOTED_VALUE.sub("'…'", message)  # the value may come from a row a filter hides
        if state == "42P01":
            return NotFound(message, error_name="TABLE_NOT_FOUND")
        if state == "42501":
            return PermissionDenied(message)
        if state in _SQLSTATE_NAMES:
            return UserError(message, error_name=_SQLSTATE_NAMES[state])
        if state.startswith(("22", "42")):
            return UserError(message)
        if state in _UNAVAILABLE_STATES or state.startswith("08"):
            return BackendUnavailable(f"PostgreSQL is unavailable: it refused the connection (SQLSTATE {state})")
        return BackendError(f"PostgreSQL error {state}: {message}")
    return BackendUnavailable(f"PostgreSQL is unavailable: the connection failed or was lost "
                              f"({type(error).__name__})")


def scanned_bytes(plan: Any) -> int:
    """Bytes the scans of an `EXPLAIN (FORMAT JSON)` plan produce: for each scan node, its estimated rows
    (after the scan's own filter) times their estimated width, summed over the whole plan tree (subplans
    and CTEs included)."""
    total = 0
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if node.get("Node Type") in _SCAN_NODES:
            total += int(float(node.get("Plan Rows", 0)) * int(node.get("Plan Width", 0)))
        stack.extend(v for k, v in node.items() if k in ("Plan", "Plans"))
    return total


def describe_catalog(rows: Sequence[Sequence[Any]]) -> list[Table]:
    """`_CATALOG_QUERY` rows -> tables, names folded to lower case. Of names that fold to the same, the one
    already lower case wins and the others are left out (logged): Trino clients could not tell them apart."""
    grouped: dict[tuple[str, str], list[Sequence[Any]]] = {}
    for row in rows:
        grouped.setdefault((row[0], row[1]), []).append(row)
    tables: dict[tuple[str, str], Table] = {}
    for (schema, name), columns in grouped.items():
        key = (schema.lower(), name.lower())
        if key in tables and (schema, name) != key:
            log.warning("table %s.%s is not shown: its name folds to that of another table", schema, name)
            continue
        kind = "VIEW" if columns[0][2] in ("v", "m") else "BASE TABLE"
        described = tuple(Column(name=c[4].lower(), type=to_sql_type(c[5]), nullable=bool(c[6]), comment=c[7],
                                 remote_name=c[4] if c[4] != c[4].lower() else None) for c in columns)
        remote = (schema, name) if (schema, name) != key else None
        tables[key] = Table(schema=key[0], name=key[1], columns=described, kind=kind, comment=columns[0][3],
                            remote_name=remote)
    return [tables[k] for k in sorted(tables)]


class PostgresBackend(Backend):
    """`tables` fixed (the audit store's own tables) or None: discovered from the server's catalog,
    restricted to `schemas` when given."""

    dialect = "postgres"

    def __init__(self, *, name: str, dsn: str, tables: Sequence[Table] | None = None,
                 schemas: Sequence[str] | None = None, pool_size: int = 4, connect_timeout_seconds: float = 10.0,
                 explain_analyze: bool = False, password: SecretSource | None = None,
                 pool_timeout_seconds: float = 10.0, metrics: Metrics | None = None) -> None:
        super().__init__(name=name)
        self._dsn = dsn
        self._password = password
        self._secret_version: str | None = None  # of the secret the pool's current connections use
        self._control_version: str | None = None
        self._pool_timeout = pool_timeout_seconds
        self._metrics = metrics
        self._checked_out = 0
        if metrics is not None:  # exposed as 0 from the start
            for event in ("opened", "failed", "drained"):
                metrics.backend_connections.labels(name, event)
            metrics.backend_pool_timeouts.labels(name)
        self._tables = list(tables) if tables is not None else None
        self._schemas = list(schemas) if schemas is not None else None
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout_seconds
        self.explain_analyze = explain_analyze
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._control: asyncpg.Connection | None = None
        self._control_lock = asyncio.Lock()
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"PostgresBackend(name={self.name!r})"  # never the DSN: it may hold a password

    async def pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=self._pool_size,
                                                           command_timeout=None, timeout=self._connect_timeout,
                                                           connect=self._connect)
                except _ERRORS as error:
                    raise translate_error(error) from None
            return self._pool

    async def _secret(self) -> Secret | None:
        return await self._password.current() if self._password is not None else None

    async def _connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        """Every new connection (pooled or control) authenticates with the secret in force now."""
        secret = await self._secret()
        if secret is not None:
            kwargs["password"] = secret.value
        try:
            connection = await asyncpg.connect(*args, **kwargs)
        except BaseException as error:
            self._count_connection("failed")
            if isinstance(error, asyncpg.PostgresError) and self._password is not None and \
                    getattr(error, "sqlstate", "") in ("28000", "28P01"):
                self._password.invalidate()  # maybe rotated on the server first: read the newest next time
            raise
        self._count_connection("opened")
        return connection

    def _count_connection(self, event: str, count: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.backend_connections.labels(self.name, event).inc(count)

    async def _drain_if_rotated(self, pool: asyncpg.Pool) -> None:
        """When the secret changed, connections opened with the old one close as they are released and idle
        ones are replaced at their next use (asyncpg's pool generations); new ones use the new secret."""
        secret = await self._secret()
        if secret is None or secret.version == self._secret_version:
            return
        if self._secret_version is not None:
            log.info("backend %s: secret rotated (version %s): draining %d connections", self.name,
                     secret.version, pool.get_size())
            self._count_connection("drained", pool.get_size())
            await pool.expire_connections()
        self._secret_version = secret.version

    async def acquire(self, *, time_limit_seconds: float | None = None) -> tuple[Any, float]:
        """A pooled connection and the seconds spent waiting for it. The wait is bounded by
        `pool_timeout_seconds` and by what is left of the query's time limit."""
        began = time.perf_counter()
        try:
            pool = await self.pool()
            await self._drain_if_rotated(pool)
            timeout = self._pool_timeout if time_limit_seconds is None else min(self._pool_timeout,
                                                                                 time_limit_seconds)
            exhausted = self._checked_out >= self._pool_size
            try:
                connection = await pool.acquire(timeout=timeout)
            except TimeoutError:
                if not exhausted and self._checked_out < self._pool_size:
                    raise BackendUnavailable(f"PostgreSQL is unavailable: no connection within {timeout:g}s") \
                        from None
                if self._metrics is not None:
                    self._metrics.backend_pool_timeouts.labels(self.name).inc()
                if time_limit_seconds is not None and time_limit_seconds <= self._pool_timeout:
                    raise InsufficientResources(
                        f"Query exceeded the maximum execution time of {time_limit_seconds:g}s waiting for a free "
                        f"connection to backend {self.name}", error_name="EXCEEDED_TIME_LIMIT") from None
                raise InsufficientResources(
                    f"No free connection to backend {self.name} within {timeout:g}s (pool_timeout_seconds): all "
                    f"{self._pool_size} of its pool_size are busy; try again later") from None
            except _ERRORS as error:
                raise translate_error(error) from None
        finally:
            waited = time.perf_counter() - began
            if self._metrics is not None:
                self._metrics.backend_pool_wait.labels(self.name).observe(waited)
        self._checked_out += 1
        return connection, waited

    async def release(self, connection: Any) -> None:
        self._checked_out -= 1
        if self._pool is not None:
            with contextlib.suppress(asyncpg.InterfaceError):  # lost, and so given back already
                await self._pool.release(connection)

    async def estimate_scan_bytes(self, sql: str) -> int | None:
        """From `EXPLAIN (FORMAT JSON)` (planned, not run): see `scanned_bytes`. PostgreSQL's estimates come from
        its statistics (ANALYZE), so they are as good as those; None when the statement cannot be explained
        or the server cannot be reached (the execution then reports why)."""
        try:
            connection, _ = await self.acquire()
        except GatewayError:
            return None
        try:
            # Planning is bounded like connecting: a plan that takes longer is not worth waiting for.
            plan_text = await asyncio.wait_for(connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}"),
                                               timeout=self._connect_timeout)
        except asyncpg.PostgresError:  # the statement cannot be explained; the connection is fine
            return None
        except CONNECTION_ERRORS:  # TimeoutError among them: the connection's state is unknown, so it is closed
            with contextlib.suppress(asyncpg.InterfaceError):
                connection.terminate()
            return None
        finally:
            await self.release(connection)
        try:
            plan = json.loads(plan_text) if isinstance(plan_text, str) else plan_text
        except ValueError:
            return None
        return scanned_bytes(plan)

    async def describe(self, sql: str, *, context: ExecutionContext | None = None) -> tuple[Column, ...]:
        """From a prepared statement's description (Parse and Describe on the server: planned, not run).
        `numeric` without rows to read a scale from is shown as the execution shows it for an empty result."""
        connection, _ = await self.acquire()
        broken = False
        try:
            statement = await asyncio.wait_for(connection.prepare(sql), timeout=self._connect_timeout)
            attributes = statement.get_attributes()
        except BaseException as error:
            broken = not isinstance(error, asyncpg.PostgresError)  # cancelled or lost mid-call: state unknown
            if isinstance(error, _ERRORS):
                raise translate_error(error) from None
            raise
        finally:
            if broken:
                with contextlib.suppress(asyncpg.InterfaceError):
                    connection.terminate()
            await self.release(connection)
        return tuple(Column(a.name, result_decimal([]) if a.type.name == "numeric" else to_sql_type(a.type.name))
                     for a in attributes)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
        if self._control is not None:
            self._control.terminate()
            self._control = None

    def execution(self, sql: str, *, time_limit_seconds: float | None = None,
                  context: ExecutionContext | None = None) -> Execution:
        return PostgresExecution(self, sql, f"{self.name}-{next(self._ids)}", time_limit_seconds=time_limit_seconds)

    async def tables(self) -> list[Table]:
        if self._tables is not None:
            return list(self._tables)
        connection, _ = await self.acquire()
        try:
            rows = await connection.fetch(_CATALOG_QUERY, self._schemas)
        except _ERRORS as error:
            raise translate_error(error) from None
        finally:
            await self.release(connection)
        return describe_catalog([tuple(r) for r in rows])

    async def ping(self) -> None:
        # Over the control connection: a pool busy with long queries is not a backend that is down.
        await self._control_fetchval("SELECT 1")

    async def cancel_backend(self, pid: int) -> None:
        """Stop the statement running in server process `pid`, over the control connection (never one from
        the pool: every pooled connection may be busy with the queries being cancelled)."""
        await self._control_fetchval("SELECT pg_cancel_backend($1)", pid)

    async def _control_fetchval(self, sql: str, *args: object) -> object:
        async with self._control_lock:
            try:
                secret = await self._secret()
                version = secret.version if secret is not None else None
                if self._control is not None and version != self._control_version:
                    self._control.terminate()  # opened with a secret since rotated
                    self._control = None
                if self._control is None or self._control.is_closed():
                    self._control = await self._connect(self._dsn, timeout=self._connect_timeout)
                    self._control_version = version
                return await self._control.fetchval(sql, *args)
            except _ERRORS as error:
                if self._control is not None:
                    self._control.terminate()
                    self._control = None
                raise translate_error(error) from None


class PostgresExecution(PrefetchingExecution):
    def __init__(self, backend: PostgresBackend, sql: str, query_id: str, *,
                 time_limit_seconds: float | None) -> None:
        super().__init__(query_id)
        self._backend = backend
        self._sql = sql
        self._time_limit = time_limit_seconds
        self._connection: Any = None
        self._cursor: Any = None
        self._converters: list[Any] = []
        self._busy = False
        self._done = False
        self._cancelled = False

    async def start(self) -> None:
        self._busy = True
        try:
            self._connection, waited = await self._backend.acquire(time_limit_seconds=self._time_limit)
            connection = self._connection
            self.stats.extra["pool_wait_seconds"] = waited
            self._check_cancelled()
            self.stats.extra["backend_pid"] = connection.get_server_pid()
            # One round trip: the transaction and its time limit (SET LOCAL ends with the transaction). No
            # limit: the role's own statement_timeout, if it has one, stays in force. The wait for the
            # connection already counts against the limit: the gateway's own timer runs from admission.
            begin = "BEGIN READ ONLY"
            if self._time_limit is not None:
                begin += f"; SET LOCAL statement_timeout = {max(int(self._time_limit * 1000), 1)}"
            await connection.execute(begin)
            self._check_cancelled()
            statement = await connection.prepare(self._sql)
            self._check_cancelled()
            attributes = statement.get_attributes()
            names = [a.type.name for a in attributes]
            kinds = [to_sql_type(n) for n in names]
            self._converters = [converter(k, n) for k, n in zip(kinds, names, strict=True)]
            if self._backend.explain_analyze:
                await self._explain_analyze(connection)
            self._cursor = await statement.cursor()
            self._check_cancelled()
            self._prefetched = await self._read(PREFETCH_ROWS) or []
            kinds = [result_decimal([r[i] for r in self._prefetched]) if n == "numeric" else k
                     for i, (k, n) in enumerate(zip(kinds, names, strict=True))]
            self.columns = tuple(Column(a.name, k) for a, k in zip(attributes, kinds, strict=True))
        except BaseException as error:
            raise await self._failed(error) from None
        finally:
            self._busy = False
        self._clock()

    async def _failed(self, error: BaseException) -> BaseException:
        """Give the connection back after `error` (which may be the task's own cancellation, mid-call: then
        the connection's state is unknown and it is closed), and what to raise."""
        clean = isinstance(error, asyncpg.PostgresError | GatewayError)
        await self._release(broken=not clean)
        if isinstance(error, _ERRORS):
            return self._translate(error)
        return error

    def _check_cancelled(self) -> None:
        # A cancel that arrived between two calls found no statement running to stop.
        if self._cancelled:
            raise QueryCanceled("Query was canceled")

    def _translate(self, error: BaseException) -> GatewayError:
        if self._cancelled:
            return QueryCanceled("Query was canceled")
        return translate_error(error, timed_out_after=self._time_limit)

    async def _explain_analyze(self, connection: Any) -> None:
        """Rows and buffers as PostgreSQL counts them. It runs the statement once more (configured per
        backend, off by default): the price of figures the wire protocol does not carry."""
        plan_text = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {self._sql}")
        plan = (json.loads(plan_text) if isinstance(plan_text, str) else plan_text)[0]
        top = plan.get("Plan", {})
        blocks = sum(int(top.get(k, 0)) for k in ("Shared Hit Blocks", "Shared Read Blocks", "Temp Read Blocks"))
        self.stats.bytes = blocks * PAGE_BYTES
        self.stats.extra.update(processed_bytes=blocks * PAGE_BYTES, plan_rows=int(top.get("Actual Rows", 0)),
                                shared_read_blocks=int(top.get("Shared Read Blocks", 0)),
                                server_execution_ms=float(plan.get("Execution Time", 0.0)))

    async def _read(self, max_rows: int) -> list[Row] | None:
        records = await self._cursor.fetch(max_rows)
        converters = self._converters
        rows: list[Row] = [tuple(c(v) if c is not None else v for c, v in zip(converters, r, strict=True))
                           for r in records]
        self.stats.rows += len(rows)
        if len(rows) < max_rows:
            await self._release(broken=False)
        return rows or None

    def _exhausted(self) -> bool:
        return self._done or self._connection is None

    async def _read_more(self, max_rows: int) -> Sequence[Row] | None:
        self._busy = True
        try:
            return await self._read(max_rows)
        except BaseException as error:
            raise await self._failed(error) from None
        finally:
            self._busy = False

    async def _release(self, *, broken: bool) -> None:
        self._done = True
        connection, self._connection = self._connection, None
        if connection is None:
            return
        # Shielded: the task running the query is often cancelled right after the query (a client's DELETE
        # cancels the statement, then the task), and a connection that never returns shrinks the pool for good.
        await asyncio.shield(self._give_back(connection, broken=broken))

    async def _give_back(self, connection: Any, *, broken: bool) -> None:
        if not broken:
            try:
                await connection.execute("ROLLBACK")  # read-only: nothing to commit; ends the cursor too
            except _ERRORS:
                broken = True
        if broken:
            with contextlib.suppress(asyncpg.InterfaceError):  # a lost connection is released by asyncpg itself
                connection.terminate()
        await self._backend.release(connection)

    async def cancel(self) -> None:
        if self._done or self._cancelled:
            return
        self._cancelled = True
        pid = self.stats.extra.get("backend_pid")
        if self._busy and pid is not None:
            # The call in progress fails with 57014 and releases the connection itself.
            try:
                await self._backend.cancel_backend(int(pid))
                return
            except GatewayError as error:
                log.warning("could not cancel PostgreSQL backend %s (%s): closing its connection", pid,
                            error.message)
                connection = self._connection
                if connection is not None:
                    connection.terminate()
                return
        if not self._busy:
            await self._release(broken=False)

