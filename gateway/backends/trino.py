"""A Trino cluster (or anything speaking Trino's client protocol) as a warehouse catalog, over HTTP with httpx.

A query is `POST /v1/statement`, then `GET nextUri` until there is none; `DELETE nextUri` cancels it (the
coordinator stops it on every worker). Pages are pulled only when the previous one has been handed on, so at
most one page (bounded by the server's target result size) is held per query. The gateway catalog maps to
one remote catalog (`catalog:`); generated SQL names it explicitly (`sql_catalog`), in sqlglot's `trino`
dialect, and every identifier is lower case, as Trino folds them.

Who a query runs for: the service `user` authenticates (Basic with `password_env`, or a bearer token from
`token_env`, over https only unless `allow_insecure_auth`); with `forward_identity` the gateway user is the
session user (`X-Trino-User`), which Trino allows when its access control lets the service user impersonate
them. X-Trino-Source and X-Trino-Client-Tags are the client's; the trace token is the gateway's query id.
The resource group's time limit becomes the session property `query_max_execution_time`, and is also enforced
here (the remote might ignore it). Cost figures are the final page's stats (cpuTimeMillis, processedBytes,
processedRows, peakMemoryBytes, wallTimeMillis).

Remote errors become gateway errors: user errors keep the remote's message without its position (a place in
the generated SQL, not the user's), without the gateway's internal names (`__gw_*`), with the remote catalog
named as the gateway names it, and with quoted values removed unless the error is about a name (a value
could come from a row a filter hides); anything else is "Trino error NAME", never the remote's internals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import httpx

from gateway.backends.base import Backend, Column, Execution, ExecutionContext, ExecutionStats, Row, Table
from gateway.backends.credentials import SecretSource
from gateway.backends.trino_settings import TrinoSettings, read_secret
from gateway.backends.trino_types import row_decoder, to_sql_type, type_from_text
from gateway.errors import (
    BackendError,
    GatewayError,
    InsufficientResources,
    NotFound,
    PermissionDenied,
    QueryCanceled,
    UserError,
)

log = logging.getLogger("gateway.backends.trino")

RETRIED_STATUSES = frozenset({502, 503, 504})  # the protocol says: retry the same nextUri
POLL_RETRIES = 3
CANCEL_TIMEOUT_SECONDS = 5.0

_POSITION = re.compile(r"^line \d+:\d+:\s*")
_INTERNAL_NAME = re.compile(r'"?\b(?:__gw_|gw\d+_)[A-Za-z0-9_]*"?\.?')  # sql/generate.py renames __gw_ to gwN_
_QUOTED_VALUE = re.compile(r"'(?:[^']|'')*'")
_CANCELED = frozenset({"USER_CANCELED", "ADMINISTRATIVELY_KILLED", "ADMINISTRATIVELY_PREEMPTED"})
_NOT_FOUND = frozenset({"TABLE_NOT_FOUND", "SCHEMA_NOT_FOUND", "CATALOG_NOT_FOUND", "NOT_FOUND"})
# Errors about names, whose quotes are identifiers; every other message may quote a value of a row.
_ABOUT_NAMES = frozenset({"COLUMN_NOT_FOUND", "FUNCTION_NOT_FOUND", "AMBIGUOUS_NAME", "MISSING_ATTRIBUTE",
                          "TYPE_MISMATCH", "NOT_SUPPORTED", "PERMISSION_DENIED", "MISSING_COLUMN_NAME",
                          "DUPLICATE_COLUMN_NAME", *_NOT_FOUND})
_HEADER_TEXT = re.compile(r"^[\x20-\x7e]*$")


def _header(text: str, what: str) -> str:
    if not _HEADER_TEXT.match(text):
        raise UserError(f"The {what} cannot be sent to the Trino backend (only printable ASCII can be)")
    return text


def translate_error(error: Mapping[str, Any], *, catalog: tuple[str, str] | None = None,
                    time_limit: float | None = None) -> GatewayError:
    """A Trino `error` object -> the gateway's. `catalog`: (remote name, gateway name), so messages name the
    catalog the user knows. `time_limit`: the limit in force, so EXCEEDED_TIME_LIMIT reads as the group's."""
    name = str(error.get("errorName") or "GENERIC_INTERNAL_ERROR")[:80]
    kind = str(error.get("errorType") or "")
    if name in _CANCELED:
        return QueryCanceled("Query was canceled")
    if name == "EXCEEDED_TIME_LIMIT":
        limit = f" of {time_limit:g}s" if time_limit is not None else ""
        return InsufficientResources(f"Query exceeded the maximum execution time{limit}",
                                     error_name="EXCEEDED_TIME_LIMIT")
    if kind not in ("USER_ERROR", "INSUFFICIENT_RESOURCES"):
        log.warning("Trino backend error %s (%s): %s", name, kind, str(error.get("message"))[:500])
        return BackendError(f"Trino error {name}")
    message = _POSITION.sub("", str(error.get("message") or "the query failed").strip())
    message = _INTERNAL_NAME.sub("", message.splitlines()[0] if message else "the query failed")
    if catalog is not None and catalog[0] != catalog[1]:
        message = re.sub(rf'(?<![\w"]){re.escape(catalog[0])}\.', f"{catalog[1]}.", message)
    if name not in _ABOUT_NAMES:
        message = _QUOTED_VALUE.sub("'…'", message)
    message = message[:1000]
    if kind == "INSUFFICIENT_RESOURCES":
        return InsufficientResources(message, error_name=name)
    if name in _NOT_FOUND:
        return NotFound(message, error_name=name)
    if name == "PERMISSION_DENIED":
        return PermissionDenied(message)
    return UserError(message, error_name=name)


def _unavailable(error: BaseException, timeout: float) -> BackendError:
    if isinstance(error, httpx.TimeoutException):
        return BackendError(f"Trino did not answer within {timeout:g}s")
    return BackendError(f"Trino is unavailable ({type(error).__name__})")


def _status_error(response: httpx.Response) -> BackendError:
    status = response.status_code
    if status in (401, 403):
        return BackendError(f"Trino refused the gateway's credentials (HTTP {status})")
    if status in RETRIED_STATUSES or status == 429:
        return BackendError(f"Trino is unavailable (HTTP {status})")
    return BackendError(f"Trino answered HTTP {status}")


def _estimate(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value) else None


def scan_bytes_from_io_plan(plan: Mapping[str, Any]) -> int | None:
    """`EXPLAIN (TYPE IO, FORMAT JSON)` -> bytes the scans read: the sum over its tables when every table has
    an estimate, else the plan's own; None where the plan says "NaN" (unknown)."""
    tables = plan.get("inputTableColumnInfos") or []
    sizes = [_estimate((t.get("estimate") or {}).get("outputSizeInBytes")) for t in tables if isinstance(t, Mapping)]
    if sizes and all(s is not None for s in sizes):
        return int(sum(s for s in sizes if s is not None))
    total = _estimate((plan.get("estimate") or {}).get("outputSizeInBytes"))
    return int(total) if total is not None else None


class TrinoBackend(Backend):
    dialect = "trino"

    def __init__(self, *, name: str, settings: TrinoSettings, schema: str | None = None,
                 schemas: Sequence[str] | None = None, pool_size: int = 4,
                 connect_timeout_seconds: float = 10.0, password: SecretSource | None = None,
                 token: SecretSource | None = None) -> None:
        super().__init__(name=name)
        self.settings = settings
        # Rotating secrets (gateway.backends.credentials): read before each request is sent, so a rotated file
        # or command output is used by the next query; password_env / token_env are read at each query.
        self._password_source, self._token_source = password, token
        self._password: str | None = None
        self._token: str | None = None
        self._schema = schema
        self._schemas = list(schemas) if schemas is not None else None
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout_seconds
        self._slots = asyncio.Semaphore(pool_size)
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"TrinoBackend(name={self.name!r}, url={self.settings.url!r})"  # never a credential

    @property
    def sql_catalog(self) -> str | None:
        return self.settings.catalog

    @property
    def timeout(self) -> float:
        return self.settings.request_timeout_seconds

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Queries hold a slot, not a connection: one spare per slot for cancels and pings.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=self._connect_timeout),
                limits=httpx.Limits(max_connections=self._pool_size * 2 + 2, max_keepalive_connections=self._pool_size),
                follow_redirects=False)
        return self._client

    async def refresh_credentials(self) -> None:
        """Take the current value of each rotating secret (a cached read unless its source changed)."""
        if self._password_source is not None:
            self._password = (await self._password_source.current()).value
        if self._token_source is not None:
            self._token = (await self._token_source.current()).value

    def credentials_refused(self) -> None:
        """Trino refused the secret: the next query reads its source again instead of the cached value."""
        for source in (self._password_source, self._token_source):
            if source is not None:
                source.invalidate()

    def authorization(self) -> str | None:
        """The Authorization header value, read at each query (so a changed secret is used at once)."""
        token = self._token if self._token_source is not None else read_secret(self.settings.token_env)
        if token is not None:
            return f"Bearer {token}"
        password = self._password if self._password_source is not None else read_secret(self.settings.password_env)
        if password is not None:
            pair = f"{self.settings.user}:{password}".encode()
            return f"Basic {base64.b64encode(pair).decode('ascii')}"
        return None

    def headers(self, context: ExecutionContext | None, time_limit: float | None) -> dict[str, str]:
        settings = self.settings
        user = settings.user
        if settings.forward_identity and context is not None and context.user:
            user = context.user
        headers = {"X-Trino-User": _header(user, "user name"), "X-Trino-Catalog": settings.catalog,
                   "X-Trino-Source": settings.source, "User-Agent": "query-gateway"}
        if self._schema is not None:
            headers["X-Trino-Schema"] = self._schema
        if context is not None:
            if context.source:
                headers["X-Trino-Source"] = _header(context.source, "client source")
            tags = sorted(tag for tag in context.client_tags if "," not in tag)
            if tags:
                headers["X-Trino-Client-Tags"] = _header(",".join(tags), "client tags")
            if context.query_id:
                headers["X-Trino-Trace-Token"] = context.query_id
        if time_limit is not None:
            headers["X-Trino-Session"] = f"query_max_execution_time={max(1, math.ceil(time_limit))}s"
        authorization = self.authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    async def start(self) -> None:
        return None  # connections open at the first query: the gateway starts while Trino is down

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def execution(self, sql: str, *, time_limit_seconds: float | None = None,
                  context: ExecutionContext | None = None) -> TrinoExecution:
        return TrinoExecution(self, sql, time_limit=time_limit_seconds, context=context)

    async def _rows(self, sql: str) -> list[Row]:
        """All rows of a small statement of the gateway's own (catalog discovery, EXPLAIN, ping), as the
        service user, outside the query slots (a backend busy with long queries still answers these)."""
        execution = TrinoExecution(self, sql, time_limit=None, context=None, slot=False)
        await execution.start()
        rows: list[Row] = []
        while (batch := await execution.fetch(1000)) is not None:
            rows.extend(batch)
        return rows

    async def tables(self) -> list[Table]:
        catalog = self.settings.catalog
        where = "table_schema <> 'information_schema'"
        if self._schemas is not None:
            where += " AND table_schema IN (" + ", ".join("'" + s.replace("'", "''") + "'" for s in self._schemas) + ")"
        kinds = {(r[0], r[1]): str(r[2]) for r in await self._rows(
            f'SELECT table_schema, table_name, table_type FROM "{catalog}".information_schema.tables WHERE {where}')}
        columns: dict[tuple[str, str], list[Column]] = {}
        for schema, table, column, data_type, nullable in await self._rows(
                f'SELECT table_schema, table_name, column_name, data_type, is_nullable '
                f'FROM "{catalog}".information_schema.columns WHERE {where} '
                f'ORDER BY table_schema, table_name, ordinal_position'):
            columns.setdefault((schema, table), []).append(
                Column(name=column, type=type_from_text(data_type), nullable=nullable != "NO"))
        return [Table(schema=s, name=n, columns=tuple(columns[(s, n)]),
                      kind="VIEW" if kinds.get((s, n)) == "VIEW" else "BASE TABLE")
                for s, n in sorted(columns) if (s, n) in kinds]

    async def estimate_scan_bytes(self, sql: str) -> int | None:
        try:
            rows = await self._rows(f"EXPLAIN (TYPE IO, FORMAT JSON) {sql}")
            plan = json.loads(rows[0][0]) if rows and isinstance(rows[0][0], str) else None
        except (GatewayError, ValueError) as error:
            log.info("no scan estimate from Trino backend %s: %s", self.name, error)
            return None
        return scan_bytes_from_io_plan(plan) if isinstance(plan, Mapping) else None

    async def ping(self) -> None:
        rows = await self._rows("SELECT 1")
        if rows != [(1,)]:
            raise BackendError("Trino answered SELECT 1 with something else")


class TrinoExecution(Execution):
    def __init__(self, backend: TrinoBackend, sql: str, *, time_limit: float | None,
                 context: ExecutionContext | None, slot: bool = True) -> None:
        self._backend = backend
        self._sql = sql
        self._time_limit = time_limit
        self._context = context
        self._uses_slot = slot
        self._holds_slot = False
        self.columns = ()
        self.stats = ExecutionStats()
        self._decode = row_decoder([])
        self._buffer: deque[Row] = deque()
        self._next_uri: str | None = None
        self._started = time.monotonic()
        self._deadline = self._started + time_limit if time_limit is not None else None
        self._cancelled = False
        self._done = False

    # -- protocol ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._guarded(self._submit())

    async def _submit(self) -> None:
        backend = self._backend
        if self._uses_slot:
            await backend._slots.acquire()
            self._holds_slot = True
        self._check_cancelled()
        await backend.refresh_credentials()
        headers = backend.headers(self._context, self._time_limit)
        response = await self._request("POST", f"{backend.settings.url}/v1/statement", headers=headers,
                                       content=self._sql.encode())
        self._take(response)
        while not self.columns and self._next_uri is not None:
            await self._advance()

    async def _pull(self) -> None:
        while not self._buffer and self._next_uri is not None:
            await self._advance()

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs `work`; on any failure (the task's own cancellation included) the remote query is deleted
        and its slot given back, and HTTP failures become the gateway's BackendError."""
        try:
            await work
        except BaseException as error:
            await self._failed()
            if isinstance(error, httpx.HTTPError):
                raise _unavailable(error, self._request_timeout()) from None
            raise
        finally:
            self.stats.elapsed_seconds = time.monotonic() - self._started

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        await self._guarded(self._pull())
        if not self._buffer:
            self._finish()
            return None
        count = min(max_rows, len(self._buffer))
        return [self._buffer.popleft() for _ in range(count)]

    async def cancel(self) -> None:
        if self._done or self._cancelled:
            return
        self._cancelled = True
        self._buffer.clear()
        await self._delete_remote()
        self._finish()  # a call in progress raises QueryCanceled when it returns

    # -- internals -----------------------------------------------------------------------------------------

    def _request_timeout(self) -> float:
        timeout = self._backend.timeout
        if self._deadline is not None:
            timeout = max(0.1, min(timeout, self._deadline - time.monotonic() + 1.0))
        return timeout

    async def _request(self, method: str, url: str, **options: Any) -> httpx.Response:
        client = self._backend.client
        for attempt in range(POLL_RETRIES + 1):
            response = await client.request(method, url, timeout=self._request_timeout(), **options)
            retry = method == "GET" and response.status_code in RETRIED_STATUSES and attempt < POLL_RETRIES
            if not retry:
                break
            await asyncio.sleep(0.05 * 2**attempt)
        if response.status_code != 200:
            if response.status_code in (401, 403):
                self._backend.credentials_refused()
            raise _status_error(response)
        return response

    async def _advance(self) -> None:
        """One more page: the next rows, or the query's progress while the server is still working."""
        self._check_cancelled()
        if self._deadline is not None and time.monotonic() >= self._deadline:
            await self._delete_remote()
            assert self._time_limit is not None
            raise InsufficientResources(f"Query exceeded the maximum execution time of {self._time_limit:g}s",
                                        error_name="EXCEEDED_TIME_LIMIT")
        assert self._next_uri is not None
        response = await self._request("GET", self._next_uri, headers=self._poll_headers())
        self._take(response)
        self._check_cancelled()

    def _poll_headers(self) -> dict[str, str]:
        headers = {"X-Trino-User": self._backend.headers(self._context, None)["X-Trino-User"]}
        authorization = self._backend.authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    def _take(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            raise BackendError("Trino answered with something that is not JSON") from None
        if not isinstance(body, Mapping):
            raise BackendError("Trino answered with something that is not a query result")
        self._next_uri = body.get("nextUri") if isinstance(body.get("nextUri"), str) else None
        if self._next_uri is None:
            self._release_slot()  # the query has ended remotely; what is buffered is the gateway's to hand on
        if isinstance(body.get("id"), str):
            self.stats.backend_query_id = body["id"]
        if isinstance(body.get("stats"), Mapping):
            self._read_stats(body["stats"])
        error = body.get("error")
        if isinstance(error, Mapping):
            self._next_uri = None  # the query has ended there
            remote = self._backend.settings.catalog
            raise translate_error(error, catalog=(remote, self._backend.name), time_limit=self._time_limit)
        if not self.columns and isinstance(body.get("columns"), list):
            self.columns = tuple(Column(str(c.get("name", "")), to_sql_type(c.get("typeSignature") or {}))
                                 for c in body["columns"])
            self._decode = row_decoder([c.type for c in self.columns])
        data = body.get("data")
        if isinstance(data, list) and data:
            width = len(self.columns)
            if not self.columns or any(not isinstance(row, list) or len(row) != width for row in data):
                raise BackendError("Trino sent rows that do not match their columns")
            self._buffer.extend(self._decode(row) for row in data)
            self.stats.rows += len(data)

    def _read_stats(self, stats: Mapping[str, Any]) -> None:
        def number(key: str) -> int:
            value = stats.get(key)
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

        self.stats.cpu_seconds = number("cpuTimeMillis") / 1000
        self.stats.bytes = number("processedBytes")
        self.stats.extra.update(processed_bytes=number("processedBytes"), processed_rows=number("processedRows"),
                                peak_memory_bytes=number("peakMemoryBytes"), wall_time_ms=number("wallTimeMillis"),
                                remote_state=str(stats.get("state", ""))[:40])

    def _check_cancelled(self) -> None:
        if self._cancelled:
            raise QueryCanceled("Query was canceled")

    async def _delete_remote(self) -> None:
        uri, self._next_uri = self._next_uri, None
        if uri is None:
            return
        # Shielded: the task running the query is often cancelled right after the query, and a query left
        # running remotely would hold the cluster's resources until it finished by itself.
        await asyncio.shield(self._send_delete(uri))

    async def _send_delete(self, uri: str) -> None:
        try:
            await self._backend.client.delete(uri, headers=self._poll_headers(), timeout=CANCEL_TIMEOUT_SECONDS)
        except httpx.HTTPError as error:
            log.warning("could not cancel Trino query %s (%s)", self.stats.backend_query_id, type(error).__name__)

    async def _failed(self) -> None:
        if self._next_uri is not None:
            await self._delete_remote()
        self._finish()

    def _finish(self) -> None:
        self._done = True
        self._release_slot()

    def _release_slot(self) -> None:
        if self._holds_slot:
            self._holds_slot = False
            self._backend._slots.release()
