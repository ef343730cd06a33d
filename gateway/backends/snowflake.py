"""Snowflake through snowflake-connector-python, whose blocking calls run on the backend's own bounded threads.

Each query holds one pooled connection (a Snowflake session) for its lifetime. Its statement carries the
per-statement parameters `QUERY_TAG` (JSON: the gateway query id, user, source, client tags, cost center, so
Snowflake's QUERY_HISTORY can be joined to the gateway's audit and ledger) and `STATEMENT_TIMEOUT_IN_SECONDS`
(the resource group's `max_execution_time`), sent with the statement itself: no ALTER SESSION round trip, and
nothing left behind on the pooled session.

`cancel` while the statement runs asks the server to stop it with `SYSTEM$CANCEL_ALL_QUERIES(<session id>)`
over a control connection: the connector only learns a query's id when the statement has finished, and the
session runs nothing but this query, so cancelling the session's queries is cancelling it. Should the server
refuse (fakesnow has no such function), the query is still ended for the gateway at once: its caller gets
QUERY_CANCELED, and its connection is closed (not pooled) when the blocked call returns. Once the statement
has finished, its result is only being read: cancel releases it.

Cost: credits = credits/hour of `warehouse_size` x the query's execution time, which Snowflake reports for the
query id (the monitoring endpoint the connector's `get_query_status` reads, `totalDuration`); where it does
not (fakesnow), the locally measured time (`extra["execution_time_source"]` says which).

The catalog comes from the database's INFORMATION_SCHEMA. Snowflake stores unquoted names in upper case;
the gateway shows them folded to lower case, as Trino does, keeping the real spelling in `remote_name`, and
SQL for Snowflake is generated with every identifier quoted (gateway/sql/generate.py), so a name resolves
exactly as it is stored, whatever its case. Errors are translated where they enter; messages about values
lose the quoted values (they may come from rows a filter hides).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import snowflake.connector
from snowflake.connector import errors as sf_errors
from snowflake.connector.constants import FIELD_ID_TO_NAME

from gateway.backends.base import Backend, Column, Execution, ExecutionContext, ExecutionStats, Row, Table
from gateway.backends.credentials import SecretSource
from gateway.backends.duckdb_messages import trino_message
from gateway.backends.snowflake_settings import Credentials, CredentialsError, SnowflakeSettings, read_credentials
from gateway.backends.snowflake_types import converter, to_sql_type
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

log = logging.getLogger("gateway.backends.snowflake")

T = TypeVar("T")

PREFETCH_ROWS = 1024
QUERY_TAG_MAX = 2000  # Snowflake's limit on QUERY_TAG
_STATEMENT_TIMEOUT_ERRNO = 630
_CANCELED_ERRNO = 604
_QUOTED_VALUE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_COMPILATION = re.compile(r"^SQL compilation error:\s*(?:error line \d+ at position \d+\s*)?", re.IGNORECASE)
_GATEWAY_NAME = re.compile(r'"?__gw_[A-Za-z0-9_]*"?\.?', re.IGNORECASE)
_SNOWFLAKE_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"Object '(?P<t>[^']*)' does not exist", re.IGNORECASE), "TABLE_NOT_FOUND",
     "Table '{t}' does not exist"),
    (re.compile(r"invalid identifier '(?P<c>[^']*)'", re.IGNORECASE), "COLUMN_NOT_FOUND",
     "Column '{c}' cannot be resolved"),
    (re.compile(r"Unknown function (?P<f>\S+)", re.IGNORECASE), "FUNCTION_NOT_FOUND", "Function '{f}' not registered"),
    (re.compile(r"Division by zero", re.IGNORECASE), "DIVISION_BY_ZERO", "Division by zero"),
]
_NOT_FOUND = ("TABLE_NOT_FOUND",)

# DATETIME_PRECISION is left out (fakesnow has none): TIME/TIMESTAMP columns show precision 6, the most the
# connector's Python values carry; a TIMESTAMP(3) column reads as timestamp(6) with the same values.
_CATALOG_QUERY = """
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, t.TABLE_TYPE, t.COMMENT, c.COLUMN_NAME, c.DATA_TYPE, c.NUMERIC_PRECISION,
       c.NUMERIC_SCALE, c.CHARACTER_MAXIMUM_LENGTH, NULL, c.IS_NULLABLE, c.COMMENT
FROM INFORMATION_SCHEMA.COLUMNS c
LEFT JOIN INFORMATION_SCHEMA.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE c.TABLE_SCHEMA <> 'INFORMATION_SCHEMA'
ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION
"""


def query_tag(context: ExecutionContext | None) -> str | None:
    """The QUERY_TAG of a query: compact JSON, within Snowflake's 2000 characters (client tags and source,
    which clients choose, are shortened first; the query id always fits)."""
    if context is None:
        return None
    tag: dict[str, Any] = {"gateway_query_id": context.query_id, "user": context.user[:256],
                           "cost_center": (context.cost_center or "")[:256] or None,
                           "source": (context.source or "")[:256] or None, "client_tags": list(context.client_tags)}
    text = json.dumps(tag, separators=(",", ":"), ensure_ascii=False)
    while len(text) > QUERY_TAG_MAX and tag["client_tags"]:
        tag["client_tags"].pop()
        text = json.dumps(tag, separators=(",", ":"), ensure_ascii=False)
    return text


def statement_parameters(context: ExecutionContext | None, time_limit_seconds: float | None) -> dict[str, str]:
    """The per-statement session parameters a query is sent with."""
    parameters: dict[str, str] = {}
    if (tag := query_tag(context)) is not None:
        parameters["QUERY_TAG"] = tag
    if time_limit_seconds is not None:
        parameters["STATEMENT_TIMEOUT_IN_SECONDS"] = str(max(math.ceil(time_limit_seconds), 1))
    return parameters


def translate_error(error: BaseException, *, timed_out_after: float | None = None) -> GatewayError:
    """The connector's exception -> the gateway's. Never the engine's internal names (`__gw_...`)."""
    if isinstance(error, CredentialsError):
        return BackendError(f"Snowflake credentials: {error}")
    if not isinstance(error, sf_errors.Error) or isinstance(error, sf_errors.OperationalError
                                                            | sf_errors.InterfaceError):
        return BackendUnavailable(f"Snowflake is unavailable ({type(error).__name__})")
    errno = error.errno or 0
    if errno == _STATEMENT_TIMEOUT_ERRNO:
        limit = f" of {timed_out_after:g}s" if timed_out_after is not None else ""
        return InsufficientResources(f"Query exceeded the maximum execution time{limit}",
                                     error_name="EXCEEDED_TIME_LIMIT")
    if errno == _CANCELED_ERRNO:
        return QueryCanceled("Query was canceled")
    if 390000 <= errno < 400000 or (error.sqlstate or "").startswith(("28", "08")):  # login, session
        return BackendUnavailable(f"Snowflake refused the gateway's connection (error {errno})")
    if errno >= 250000:  # raised by the connector itself (bad settings, protocol), not by a statement
        return BackendError(f"Snowflake connector error {errno}")
    if not isinstance(error, sf_errors.ProgrammingError | sf_errors.DataError | sf_errors.IntegrityError):
        return BackendError(f"Snowflake error {errno}")
    message = _COMPILATION.sub("", (error.msg or "").strip())
    state = error.sqlstate or ""
    if state.startswith("22") or 100000 <= errno < 101000:  # data errors quote the value they failed on
        message = _QUOTED_VALUE.sub("'…'", message)
    message = _GATEWAY_NAME.sub("", message)
    if "insufficient privileges" in message.lower():
        return PermissionDenied(message.splitlines()[0] if message else "Access denied")
    name, text = _rule(message)
    if name in _NOT_FOUND:
        return NotFound(text, error_name=name)
    return UserError(text, error_name=name) if name is not None else UserError(text)


def _rule(message: str) -> tuple[str | None, str]:
    for pattern, name, template in _SNOWFLAKE_RULES:
        if (found := pattern.search(message)) is not None:
            return name, template.format(**found.groupdict())
    return trino_message(message)  # fakesnow's messages are DuckDB's


def describe_catalog(rows: Sequence[Sequence[Any]], schemas: Sequence[str] | None = None) -> list[Table]:
    """`_CATALOG_QUERY` rows -> tables, names folded to lower case, the stored spelling in `remote_name`. Of
    names that fold to the same, the one already lower case wins, else the first, and the others are left out
    (logged): Trino clients could not tell them apart."""
    wanted = {s.lower() for s in schemas} if schemas is not None else None
    grouped: dict[tuple[str, str], list[Sequence[Any]]] = {}
    for row in rows:
        if wanted is None or str(row[0]).lower() in wanted:
            grouped.setdefault((row[0], row[1]), []).append(row)
    tables: dict[tuple[str, str], Table] = {}
    for (schema, name), columns in sorted(grouped.items(), key=lambda item: item[0] != (item[0][0].lower(),
                                                                                       item[0][1].lower())):
        key = (schema.lower(), name.lower())
        if key in tables:
            log.warning("table %s.%s is not shown: its name folds to that of another table", schema, name)
            continue
        described = tuple(Column(name=c[4].lower(), nullable=str(c[10]).upper() != "NO", comment=c[11],
                                 type=to_sql_type(c[5], precision=c[6], scale=c[7] if c[7] is not None else c[9],
                                                  length=c[8]),
                                 remote_name=c[4] if c[4] != c[4].lower() else None)
                          for c in _distinct_columns(columns))
        kind = "VIEW" if "VIEW" in str(columns[0][2]).upper() else "BASE TABLE"
        tables[key] = Table(schema=key[0], name=key[1], columns=described, kind=kind, comment=columns[0][3],
                            remote_name=(schema, name) if (schema, name) != key else None)
    return [tables[k] for k in sorted(tables)]


def _distinct_columns(columns: list[Sequence[Any]]) -> list[Sequence[Any]]:
    kept: dict[str, Sequence[Any]] = {}
    for column in columns:
        folded = column[4].lower()
        if folded in kept and column[4] != folded:
            log.warning("column %s.%s is not shown: its name folds to that of another column", column[1], column[4])
            continue
        kept[folded] = column
    return list(kept.values())


class SnowflakeBackend(Backend):
    dialect = "snowflake"

    def __init__(self, *, name: str, settings: SnowflakeSettings, schemas: Sequence[str] | None = None,
                 pool_size: int = 4, connect_timeout_seconds: float = 10.0, password: SecretSource | None = None,
                 private_key: SecretSource | None = None, private_key_passphrase: SecretSource | None = None,
                 connect: Callable[..., Any] = snowflake.connector.connect) -> None:
        super().__init__(name=name)
        self.settings = settings
        self._secrets = (password, private_key, private_key_passphrase)
        self._schemas = list(schemas) if schemas is not None else None
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout_seconds
        self._connect = connect
        # One thread per pooled connection, and one for the control connection (ping, cancel): a pool busy with
        # long queries never delays a cancel.
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix=f"snowflake-{name}")
        self._control_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"snowflake-{name}-control")
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()
        self._control: Any = None

    def __repr__(self) -> str:
        return f"SnowflakeBackend(name={self.name!r}, account={self.settings.account!r})"

    async def start(self) -> None:
        return None  # connections open at the first query, so the gateway starts while Snowflake is unreachable

    async def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in [*idle, self._control]:
            if connection is not None:
                _close_quietly(connection)
        self._control = None
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._control_thread.shutdown(wait=False, cancel_futures=True)

    def execution(self, sql: str, *, time_limit_seconds: float | None = None,
                  context: ExecutionContext | None = None) -> Execution:
        return SnowflakeExecution(self, sql, time_limit_seconds=time_limit_seconds, context=context)

    async def describe(self, sql: str, *, context: ExecutionContext | None = None) -> tuple[Column, ...]:
        """From the connector's `cursor.describe` (a describeOnly request: Snowflake compiles the statement
        and returns its result metadata without running it, and so without warehouse time)."""
        async with self._slots:
            credentials = await self.credentials()
            return await self.run(lambda: self._describe(sql, credentials))

    def _describe(self, sql: str, credentials: Credentials) -> tuple[Column, ...]:
        connection = self.checkout(credentials)
        broken = True
        try:
            with connection.cursor() as cursor:
                described = cursor.describe(sql) or []
            broken = False
            return result_columns(described)
        except sf_errors.ProgrammingError:  # the statement was refused; the session is fine
            broken = False
            raise
        finally:
            self.checkin(connection, broken=broken)

    async def credentials(self) -> Credentials:
        """What a new session logs in with, read from the secret sources now (rotation: every new session)."""
        try:
            return await read_credentials(*self._secrets)
        except CredentialsError as error:
            raise translate_error(error) from None

    async def tables(self) -> list[Table]:
        async with self._slots:
            credentials = await self.credentials()
            try:
                rows = await self.run(lambda: self._read_catalog(credentials))
            except UserError as error:  # the catalog query is the gateway's own: the backend is not usable
                raise BackendError(f"Snowflake catalog of {self.settings.database}: {error.message}") from None
        return describe_catalog(rows, self._schemas)

    def _read_catalog(self, credentials: Credentials) -> list[tuple[Any, ...]]:
        connection = self.checkout(credentials)
        broken = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(_CATALOG_QUERY)
                rows = [tuple(r) for r in cursor.fetchall()]
            broken = False
            return rows
        finally:
            self.checkin(connection, broken=broken)

    async def ping(self) -> None:
        # Over the control connection: a pool busy with long queries is not a backend that is down.
        await self.control("SELECT 1")

    async def cancel_session(self, session_id: int) -> None:
        """Stop what Snowflake session `session_id` runs (one pooled connection: one query)."""
        await self.control(f"SELECT SYSTEM$CANCEL_ALL_QUERIES({int(session_id)})")

    async def control(self, sql: str) -> Any:
        loop = asyncio.get_running_loop()
        credentials = await self.credentials()
        try:
            return await loop.run_in_executor(self._control_thread, self._control_call, sql, credentials)
        except (sf_errors.Error, CredentialsError, OSError) as error:
            raise translate_error(error) from None

    def _control_call(self, sql: str, credentials: Credentials) -> Any:
        try:
            if self._control is None or self._control.is_closed():
                self._control = self.open_connection(credentials)
            with self._control.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchone()
        except (sf_errors.OperationalError, sf_errors.InterfaceError, OSError):
            if self._control is not None:
                _close_quietly(self._control)
                self._control = None
            raise

    async def run(self, call: Callable[[], T]) -> T:
        """`call` on one of the backend's threads (the caller holds a slot), errors translated."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, call)
        except (sf_errors.Error, CredentialsError, OSError) as error:
            raise translate_error(error) from None

    def open_connection(self, credentials: Credentials) -> Any:
        """A new Snowflake session (blocking)."""
        s = self.settings
        options: dict[str, Any] = {
            "account": s.account, "user": s.user, "database": s.database, "warehouse": s.warehouse, "role": s.role,
            "login_timeout": self._connect_timeout, "network_timeout": self._connect_timeout,
            "application": "query_gateway", "client_session_keep_alive": False, "autocommit": True,
            "session_parameters": {"TIMEZONE": "UTC"},
            **credentials.connector_arguments(),
        }
        if s.host is not None:
            options.update(host=s.host, protocol=s.protocol)
        if s.port is not None:
            options["port"] = s.port
        return self._connect(**{k: v for k, v in options.items() if v is not None})

    def checkout(self, credentials: Credentials) -> Any:
        """An idle pooled connection, or a new one (blocking; the caller holds a slot)."""
        with self._idle_lock:
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
        return self.open_connection(credentials)

    def checkin(self, connection: Any, *, broken: bool) -> None:
        if broken or connection.is_closed():
            _close_quietly(connection)
            return
        with self._idle_lock:
            self._idle.append(connection)


def result_columns(description: Sequence[Any]) -> tuple[Column, ...]:
    """A result's metadata (the connector's ResultMetadata) -> columns, named in lower case as Trino clients
    expect (Snowflake stores unquoted names upper-cased)."""
    return tuple(Column(d.name.lower(), to_sql_type(FIELD_ID_TO_NAME.get(d.type_code, "TEXT"), d.precision, d.scale,
                                                    d.internal_size)) for d in description)


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception as error:  # closing a session that is already gone
        log.debug("closing a Snowflake connection failed: %s", type(error).__name__)


class SnowflakeExecution(Execution):
    def __init__(self, backend: SnowflakeBackend, sql: str, *, time_limit_seconds: float | None,
                 context: ExecutionContext | None) -> None:
        self._backend = backend
        self._sql = sql
        self._time_limit = time_limit_seconds
        self._parameters = statement_parameters(context, time_limit_seconds)
        self._connection: Any = None
        self._cursor: Any = None
        self._converters: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prefetched: list[Row] | None = None
        self._holding_slot = False
        self._busy: asyncio.Future[Any] | None = None  # the blocking call in progress
        self._cancelled = asyncio.Event()
        self._done = False
        self._started = time.perf_counter()
        self._executed_seconds = 0.0
        self.columns = ()
        self.stats = ExecutionStats(extra={"warehouse_size": backend.settings.warehouse_size})

    async def start(self) -> None:
        backend = self._backend
        self._loop = asyncio.get_running_loop()
        await self._wait(asyncio.ensure_future(backend._slots.acquire()), on_cancel=backend._slots.release)
        self._holding_slot = True
        try:
            credentials = await backend.credentials()
        except GatewayError:
            self._release_in_background(broken=False)
            raise
        self._connection = await self._call(lambda: backend.checkout(credentials))
        self.stats.extra["session_id"] = self._connection.session_id
        await self._call(self._execute)
        self.columns = result_columns(self._cursor.description)
        self._prefetched = await self._call(lambda: self._read(PREFETCH_ROWS)) or []

    def _execute(self) -> None:
        began = time.perf_counter()
        self._cursor = cursor = self._connection.cursor()
        cursor.execute(self._sql, _statement_params=self._parameters or None)
        self._executed_seconds = time.perf_counter() - began
        self.stats.backend_query_id = cursor.sfqid
        self._converters = [converter(c.type) for c in result_columns(cursor.description)]

    def _read(self, max_rows: int) -> list[Row] | None:
        """The next rows (blocking); at the end of the result, the query's figures and the connection back."""
        records = self._cursor.fetchmany(max_rows)
        converters = self._converters
        rows: list[Row] = [tuple(c(v) if c is not None else v for c, v in zip(converters, r, strict=True))
                           for r in records]
        self.stats.rows += len(rows)
        if len(rows) < max_rows:
            self._record_cost()
            self._give_back(broken=False)
        return rows or None

    def _record_cost(self) -> None:
        """Credits of the query's execution time: Snowflake's figure for its id where reported, else local."""
        seconds, source = self._executed_seconds, "local"
        query_id = self.stats.backend_query_id
        if query_id:
            try:
                _status, response = self._connection._get_query_status(query_id)
                queries = response.get("data", {}).get("queries") or [{}]
                if (total := queries[0].get("totalDuration")) is not None:
                    seconds, source = float(total) / 1000, "snowflake"
            except (sf_errors.Error, ValueError, KeyError, TypeError, AttributeError) as error:
                log.debug("no execution time for Snowflake query %s (%s)", query_id, type(error).__name__)
        settings = self._backend.settings
        credits = settings.credits_per_hour * seconds / 3600
        self.stats.extra.update(execution_seconds=seconds, execution_time_source=source, credits=credits)
        if settings.credit_price is not None:
            self.stats.extra["credit_cost"] = credits * settings.credit_price

    def _give_back(self, *, broken: bool) -> None:
        """The connection back to the pool (blocking, on the thread that used it) and the slot free."""
        if self._done:
            return
        self._done = True
        connection, self._connection = self._connection, None
        if self._cursor is not None:
            self._cursor.close()
        if connection is not None:
            self._backend.checkin(connection, broken=broken)
        if self._holding_slot:
            self._holding_slot = False
            assert self._loop is not None  # a slot is only held once started
            self._loop.call_soon_threadsafe(self._backend._slots.release)  # asyncio's: released on its loop

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        if self._prefetched is not None:
            prefetched, self._prefetched = self._prefetched, None
            if prefetched:
                return prefetched
        if self._done:
            return None
        try:
            return await self._call(lambda: self._read(max_rows))
        finally:
            self.stats.elapsed_seconds = time.perf_counter() - self._started

    async def _call(self, work: Callable[[], T]) -> T:
        """`work` on a backend thread; a cancel ends the wait at once (the thread finishes on its own)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._backend._threads, work)
        result: T = await self._wait(future, on_cancel=None)
        return result

    async def _wait(self, future: asyncio.Future[Any], *, on_cancel: Callable[[], object] | None) -> Any:
        if self._cancelled.is_set():
            self._abandon(future, on_cancel)
            raise QueryCanceled("Query was canceled")
        self._busy = future
        cancelled: asyncio.Future[Any] = asyncio.ensure_future(self._cancelled.wait())
        try:
            await asyncio.wait({future, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the task itself was cancelled: the call finishes on its own, then cleans up
            self._abandon(future, on_cancel)
            raise
        finally:
            self._busy = None
            cancelled.cancel()
        if not future.done():
            self._abandon(future, on_cancel)
            raise QueryCanceled("Query was canceled")
        try:
            result = future.result()
        except BaseException as error:
            self._release_in_background(broken=True)
            if self._cancelled.is_set():
                raise QueryCanceled("Query was canceled") from None
            if isinstance(error, GatewayError):
                raise
            if isinstance(error, sf_errors.Error | CredentialsError | OSError):
                raise translate_error(error, timed_out_after=self._time_limit) from None
            raise
        self.stats.elapsed_seconds = time.perf_counter() - self._started
        if self._cancelled.is_set():
            self._release_in_background(broken=True)
            raise QueryCanceled("Query was canceled")
        return result

    def _abandon(self, future: asyncio.Future[Any], on_cancel: Callable[[], object] | None) -> None:
        if on_cancel is not None:
            future.cancel()  # an asyncio wait (the slot), never a thread's call: that one runs to its end
        future.add_done_callback(lambda f: self._abandoned(f, on_cancel))

    def _abandoned(self, future: asyncio.Future[Any], on_cancel: Callable[[], object] | None) -> None:
        """A call whose caller stopped waiting has returned: its connection's state is unknown, so it closes.
        `on_cancel`: what undoes the call's effect instead (a slot acquired for nobody)."""
        failed = future.cancelled() or future.exception() is not None  # retrieved: the caller was told already
        if on_cancel is not None:
            if not failed:
                on_cancel()
            return
        self._release_in_background(broken=True)

    def _release_in_background(self, *, broken: bool) -> None:
        if self._done:
            return
        if self._connection is None:
            self._give_back(broken=broken)  # nothing blocking to do: the slot only
            return
        try:
            self._backend._threads.submit(self._give_back, broken=broken)
        except RuntimeError:  # the backend is closing
            self._give_back(broken=broken)

    async def cancel(self) -> None:
        if self._done or self._cancelled.is_set():
            return
        self._cancelled.set()
        busy, session_id = self._busy, self.stats.extra.get("session_id")
        if busy is not None and not busy.done() and session_id is not None and self._cursor is not None:
            try:
                await self._backend.cancel_session(int(session_id))
            except GatewayError as error:
                log.info("Snowflake did not cancel session %s (%s): its connection closes when the call returns",
                         session_id, error.message)
        elif busy is None:
            self._release_in_background(broken=False)
