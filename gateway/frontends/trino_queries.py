"""Trino protocol state of running queries: a result buffer per query, pages with retry-safe tokens, and a
reaper for queries whose client stopped polling.

A producer task per query pulls batches from the pipeline into a bounded buffer (backpressure: a slow
client slows the backend fetch, never the gateway's memory). Each response is page `token`; the client asks
for `token + 1` next, and may ask for the same token again (a retry after a network error) and gets the
same page back.

Bytes are bounded as well as rows: batches are fetched at about a page's worth of bytes (from the size of
the rows so far), no chunk is larger than `page_bytes` (a single row larger than that fails the query:
EXCEEDED_RESULT_BYTES_LIMIT, never a huge page), and the query's total is counted against its cap
(`QueryRun.count_result_bytes`). Whatever fails in the producer — the backend, a value the encoder refuses,
a cap, a bug — ends its query exactly once (`QueryRun.cancel`: the error to the client, the slot freed, one
audit record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from gateway.errors import GatewayError, InsufficientResources, InternalError, QueryCanceled, UserError
from gateway.frontends.settings import ProtocolSettings
from gateway.frontends.trino_values import encoding_failure, row_encoder
from gateway.metrics import Metrics
from gateway.pipeline import QueryRun
from gateway.relations import Row

log = logging.getLogger("gateway.trino")

FETCH_ROWS = 1024
VARIABLE_WIDTH = frozenset({"varchar", "char", "varbinary", "json"})  # values whose size is their length


@dataclass(frozen=True)
class Chunk:
    """Rows already encoded as the inside of a JSON array (no brackets), so each is serialised once."""

    json: str
    rows: int


@dataclass
class Page:
    token: int
    body: bytes
    headers: list[tuple[str, str]]


class TrinoQuery:
    def __init__(self, run: QueryRun, *, settings: ProtocolSettings, metrics: Metrics) -> None:
        self.run = run
        self.slug = secrets.token_urlsafe(16)  # unguessable: only the client that posted can follow nextUri
        self.settings = settings
        self.metrics = metrics
        self.last_polled = time.monotonic()
        self.last_page: Page | None = None
        self.finished_sent = False
        self._chunks: deque[Chunk] = deque()
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._producer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wide: list[int] = []  # columns of VARIABLE_WIDTH types
        self.columns_sent = False
        self.rows_sent = 0

    @property
    def query_id(self) -> str:
        return self.run.query_id

    def start(self) -> None:
        self._producer = asyncio.create_task(self._produce(), name=f"query-{self.query_id}")

    async def _produce(self) -> None:
        run = self.run
        try:
            await run.start()
            if run.trino_columns is not None:
                await self._fetch_all()
        except GatewayError as error:
            await run.cancel(error)
        except Exception as error:  # a bug: the query still ends, once, with an error its client can read
            log.exception("query %s: producing its result failed", self.query_id)
            await run.cancel(InternalError(f"internal error ({type(error).__name__})"))
        finally:
            self._arrived.set()

    async def _fetch_all(self) -> None:
        run = self.run
        columns = run.trino_columns
        assert columns is not None
        zone: tzinfo | None = ZoneInfo(run.session.time_zone) if run.session.time_zone else None
        encode = row_encoder([c.type for c in columns], zone, [c.name for c in columns], run.column_zones)
        self._wide = [i for i, c in enumerate(columns) if c.type.name in VARIABLE_WIDTH]
        limit = self.settings.page_rows * 2
        batch = min(FETCH_ROWS, self.settings.page_rows)
        while not run.done:
            await self._room.wait()
            rows = await run.fetch(batch)
            if rows is None:
                break
            size = self._push(rows, encode)
            # About a page of bytes per fetch: wide rows come a few at a time, never a gigabyte at once.
            per_row = max(1, size // len(rows))
            batch = max(1, min(FETCH_ROWS, self.settings.page_rows, self.settings.page_bytes // per_row))
            if self._buffered_rows >= limit or self._buffered_bytes >= 2 * self.settings.page_bytes:
                self._room.clear()

    def _push(self, rows: Sequence[Row], encode: Callable[[Sequence[Any]], list[Any]]) -> int:
        """Encode `rows` into chunks of at most a page (rows and bytes); their size in bytes."""
        step = self.settings.page_rows
        total = 0
        if self._wide:
            self._refuse_huge_values(rows)
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            encoded = [encode(r) for r in part]
            text = self._serialised(encoded)[1:-1]
            if len(text) <= self.settings.page_bytes or len(part) == 1:
                chunks = [Chunk(text, len(part))]
            else:
                chunks = self._split([_json(r) for r in encoded])
            for chunk in chunks:
                if len(chunk.json) > self.settings.page_bytes:
                    raise self._too_wide(len(chunk.json))
                self.run.count_result_bytes(len(chunk.json))
                self._chunks.append(chunk)
                self._buffered_rows += chunk.rows
                self._buffered_bytes += len(chunk.json)
                total += len(chunk.json)
        self._arrived.set()
        return total

    def _serialised(self, rows: list[list[Any]]) -> str:
        """`rows` as JSON; a value JSON cannot hold (NaN where its type passes values through) fails the query
        naming its column, never as an internal error."""
        try:
            return _json(rows)
        except (ValueError, TypeError) as error:
            assert self.run.trino_columns is not None
            for row in rows:
                for column, value in zip(self.run.trino_columns, row, strict=False):
                    try:
                        _json(value)
                    except (ValueError, TypeError):
                        raise encoding_failure(column.name, column.type, error) from None
            raise

    def _refuse_huge_values(self, rows: Sequence[Row]) -> None:
        """A text or binary value longer than a page fails the query before it is encoded: JSON-encoding a
        300 MB string first would cost another 300 MB (and seconds) only to refuse it."""
        limit = self.settings.page_bytes
        for row in rows:
            for index in self._wide:
                value = row[index]
                if value is not None and len(value) > limit:
                    raise self._too_wide(len(value))

    def _too_wide(self, size: int) -> InsufficientResources:
        return InsufficientResources(
            f"A row of the result is {size} bytes or more, more than the page limit of {self.settings.page_bytes} "
            f"(protocol.page_bytes); select less of it (substr, LIMIT)", error_name="EXCEEDED_RESULT_BYTES_LIMIT")

    def _split(self, rows: list[str]) -> list[Chunk]:
        """Consecutive encoded rows grouped into chunks of at most `page_bytes` (a larger row stands alone)."""
        chunks: list[Chunk] = []
        group: list[str] = []
        size = 0
        for row in rows:
            if group and size + len(row) + 1 > self.settings.page_bytes:
                chunks.append(Chunk(",".join(group), len(group)))
                group, size = [], 0
            group.append(row)
            size += len(row) + 1
        if group:
            chunks.append(Chunk(",".join(group), len(group)))
        return chunks

    async def wait(self, seconds: float) -> None:
        """Until a full page is buffered or no more rows will come, at most `seconds`. Waiting for a full
        page (not just the first rows) lets a small result travel in one response, with no nextUri."""
        deadline = asyncio.get_running_loop().time() + seconds
        while (self._producing and self._buffered_rows < self.settings.page_rows
               and self._buffered_bytes < self.settings.page_bytes):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)

    @property
    def _producing(self) -> bool:
        return self._producer is not None and not self._producer.done()

    def take(self) -> tuple[list[str], int]:
        """Buffered chunks up to the page limits; the JSON pieces and their row count."""
        pieces: list[str] = []
        rows = size = 0
        while self._chunks and rows < self.settings.page_rows and size < self.settings.page_bytes:
            chunk = self._chunks[0]
            if pieces and rows + chunk.rows > self.settings.page_rows:
                break
            if pieces and size + len(chunk.json) > self.settings.page_bytes:
                break
            self._chunks.popleft()
            pieces.append(chunk.json)
            rows += chunk.rows
            size += len(chunk.json)
        self._buffered_rows -= rows
        self._buffered_bytes -= size
        if self._buffered_rows < self.settings.page_rows * 2 and self._buffered_bytes < 2 * self.settings.page_bytes:
            self._room.set()
        return pieces, rows

    @property
    def exhausted(self) -> bool:
        """No more rows will come and none are buffered."""
        return self.run.done and not self._producing and not self._chunks

    async def cancel(self, error: GatewayError | None = None) -> None:
        await self.run.cancel(error or QueryCanceled("Query was canceled"))
        self._chunks.clear()
        self._room.set()
        if self._producer is not None and not self._producer.done():
            self._producer.cancel()


# One encoder for every page: json.dumps with options builds a new JSONEncoder on each call.
_json: Callable[[Any], str] = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=str).encode


class QueryRegistry:
    """The queries this gateway process is serving over the Trino protocol."""

    def __init__(self, settings: ProtocolSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._queries: dict[str, TrinoQuery] = {}
        self._finished_at: dict[str, float] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.announce: Callable[[str], Awaitable[None]] | None = None  # tells other replicas who holds it

    async def add(self, query: TrinoQuery) -> None:
        self._queries[query.query_id] = query
        if self.announce is not None:
            await self.announce(query.query_id)

    def ids(self) -> list[str]:
        return list(self._queries)

    def get(self, query_id: str, slug: str) -> TrinoQuery | None:
        query = self._queries.get(query_id)
        if query is None or not secrets.compare_digest(query.slug, slug):
            return None
        return query

    def by_id(self, query_id: str) -> TrinoQuery | None:
        """For requests authorized by identity instead of the URI's slug (DELETE /v1/query/{id})."""
        return self._queries.get(query_id)

    def running(self) -> list[TrinoQuery]:
        """Queries still executing on a backend."""
        return [q for q in self._queries.values() if not q.run.done]

    def in_flight(self) -> list[TrinoQuery]:
        """Queries whose client has not yet received the final response (rows may all be buffered)."""
        return [q for q in self._queries.values() if not q.finished_sent and q.query_id not in self._finished_at]

    def mark_finished(self, query: TrinoQuery) -> None:
        self._finished_at.setdefault(query.query_id, time.monotonic())

    def start_reaper(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="trino-query-reaper")

    async def _reap_forever(self) -> None:
        interval = min(5.0, self.settings.client_timeout_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            await self.reap()

    async def reap(self) -> None:
        now = time.monotonic()
        for query in list(self._queries.values()):
            idle = now - query.last_polled
            if not query.run.done and idle > self.settings.client_timeout_seconds:
                self.metrics.abandoned.inc()
                await query.cancel(UserError(
                    f"Query {query.query_id} was abandoned by the client: not polled for {idle:.0f}s",
                    error_name="ABANDONED_QUERY"))
                self.mark_finished(query)
        # Keep finished queries a little so a client retrying its last poll still gets the final page.
        keep = max(60.0, self.settings.client_timeout_seconds / 5)
        for query_id, finished in list(self._finished_at.items()):
            if now - finished > keep:
                self._queries.pop(query_id, None)
                del self._finished_at[query_id]

    async def close(self, error: GatewayError | None = None) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for query in list(self._queries.values()):
            await query.cancel(error)
