"""The embedded audit store: one SQLite file in WAL mode.

WAL with synchronous=NORMAL: a commit is durable against a crash of the gateway (the journal, fsync'd by
the trail, covers power loss). Triggers refuse UPDATE and DELETE on records and checkpoints; the retention
job (`gateway audit purge`) lifts them inside its own transaction only. All calls run on one worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway.audit.chain import Checkpoint
from gateway.audit.record import FIELDS, AuditRecord, format_time, parse_time
from gateway.audit.search import Search
from gateway.audit.stores.base import (
    COLUMNS,
    AuditStore,
    RecordsRefused,
    StoreUnavailable,
    audit_tables,
    record_fields,
    row_values,
)
from gateway.backends.base import Backend
from gateway.cost.ledger import (
    ATTRIBUTION_COLUMNS,
    CHARGE_COLUMNS,
    attribution_from_row,
    billing_tables,
    charge_from_row,
    charge_rows,
    sqlite_ddl,
)
from gateway.cost.model import Charge
from gateway.grants.model import AccessEvent
from gateway.grants.tables import EVENT_COLUMNS, EVENT_FIELDS, access_tables, event_from_row, event_row
from gateway.grants.tables import sqlite_ddl as access_ddl
from gateway.types import VARCHAR

T = TypeVar("T")

# a value or constraint the store refuses (the same batch would be refused again): not an outage
_REFUSALS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
             UnicodeError, OverflowError, TypeError, ValueError)

SCHEMA_VERSION = 3  # 2: the cost ledger (charges, attributions); 3: access requests
_TYPES = {"text": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "BOOLEAN", "json": "TEXT", "time": "TEXT"}
_NOT_NULL = {"event_id", "stream", "sequence_number", "received_at", "finished_at", "decision", "prev_hash",
             "record_hash", "frontend", "cache_hit"}

_GUARDS = {
    f"{table}_no_{action}": f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action} BEFORE {action.upper()} ON {table} "
                            f"BEGIN SELECT RAISE(ABORT, 'audit {table} are append-only'); END"
    for table in ("queries", "checkpoints") for action in ("update", "delete")
}


def _ddl() -> str:
    columns = ",\n  ".join(f"{name} {_TYPES[kind]}{' NOT NULL' if name in _NOT_NULL else ''}"
                           for name, kind in FIELDS)
    return f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  {columns},
  UNIQUE (stream, sequence_number)
);
CREATE INDEX IF NOT EXISTS queries_received ON queries (received_at);
CREATE INDEX IF NOT EXISTS queries_user ON queries (user_name, received_at);
CREATE TABLE IF NOT EXISTS checkpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  stream TEXT NOT NULL, sequence_number INTEGER NOT NULL, record_hash TEXT NOT NULL, written_at TEXT NOT NULL,
  final BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS purges (
  stream TEXT PRIMARY KEY, sequence_number INTEGER NOT NULL, record_hash TEXT NOT NULL, purged_at TEXT NOT NULL
);
CREATE VIEW IF NOT EXISTS table_access AS
  SELECT q.event_id, q.stream, q.sequence_number, q.received_at, q.user_name, q.user_groups, q.source,
         q.statement_type, q.decision, q.error_name, t.key AS table_name, c.value AS column_name
  FROM queries q JOIN json_each(q.columns_read) t LEFT JOIN json_each(t.value) c ON 1 = 1;
{';'.join(_GUARDS.values())};
{sqlite_ddl()}
{access_ddl()}
"""


class SQLiteStore(AuditStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._probe: asyncio.Future[Any] | None = None

    async def _run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._connection is None:
                raise StoreUnavailable("the SQLite audit store is not open")
            try:
                return function(self._connection)
            except sqlite3.OperationalError as error:
                raise StoreUnavailable(f"SQLite audit store {self.path}: {error}") from None

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.execute("PRAGMA busy_timeout = 5000")
                connection.executescript(f"BEGIN; {_ddl()} COMMIT;")
                row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
                if row is None or row[0] is None or row[0] < SCHEMA_VERSION:
                    connection.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                elif row[0] > SCHEMA_VERSION:
                    raise StoreUnavailable(f"the audit store {self.path} has schema version {row[0]}, newer than "
                                           f"this gateway's {SCHEMA_VERSION}")
            except (sqlite3.Error, OSError) as error:
                raise StoreUnavailable(f"cannot open the SQLite audit store {self.path}: {error}") from None
            self._connection = connection

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    async def write(self, records: Sequence[AuditRecord], charges: Sequence[Charge] = ()) -> None:
        try:
            rows = [row_values(r, bool_as_int=True, time=str) for r in records]
            charged, attributed = charge_rows(charges, time=str, bool_as_int=True)
        except (TypeError, ValueError) as error:  # a field the store cannot hold (a corrupted journal)
            raise RecordsRefused(f"a record cannot be converted for the SQLite audit store: {error}") from None

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                insert_rows(connection, f"INSERT OR IGNORE INTO queries ({COLUMNS})", rows)
                stored = _attributed(connection, [row[0] for row in charged])  # a batch written again
                insert_rows(connection, f"INSERT OR IGNORE INTO charges ({CHARGE_COLUMNS})", charged)
                insert_rows(connection, f"INSERT INTO attributions ({ATTRIBUTION_COLUMNS})",
                            [a for a in attributed if a[0] not in stored])
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        try:
            await self._run(insert)
        except _REFUSALS as error:
            raise RecordsRefused(f"the SQLite audit store refused the records: {error}") from None

    async def ping(self) -> None:
        # the probe's caller gives up after its timeout, but a job queued on the store's one thread would stay
        # queued: while one is outstanding, the store is still stuck and no second one is queued behind it
        if self._probe is not None and not self._probe.done():
            raise StoreUnavailable(f"the SQLite audit store {self.path} has not answered the previous probe")
        self._probe = asyncio.ensure_future(self._run(lambda c: c.execute("SELECT 1").fetchone()))
        self._probe.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved, if late
        await asyncio.shield(self._probe)

    async def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO checkpoints (stream, sequence_number, record_hash, written_at, final) VALUES (?, ?, ?, ?, ?)",
            (checkpoint.stream, checkpoint.sequence_number, checkpoint.record_hash, checkpoint.written_at,
             int(checkpoint.final))))

    async def scan(self, batch: int = 5000) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
        last = 0
        while True:
            rows = await self._run(partial(_page, after=last, batch=batch))
            if not rows:
                return
            last = rows[-1][0]
            yield [(row[0], record_fields(row[1:], time=str)) for row in rows]

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._run(lambda c: c.execute(
            "SELECT stream, sequence_number, record_hash, written_at, final FROM checkpoints ORDER BY id").fetchall())
        return [Checkpoint(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    async def purges(self) -> dict[str, tuple[int, str]]:
        rows = await self._run(lambda c: c.execute(
            "SELECT stream, sequence_number, record_hash FROM purges").fetchall())
        return {r[0]: (r[1], r[2]) for r in rows}

    async def search(self, search: Search) -> list[tuple[int, dict[str, Any]]]:
        condition, values = search.where(lambda n: "?", lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        sql = f"SELECT id, {COLUMNS} FROM queries WHERE {condition} ORDER BY id DESC LIMIT ?"
        rows = await self._run(lambda c: c.execute(sql, [*values, search.limit]).fetchall())
        return [(row[0], record_fields(row[1:], time=str)) for row in rows]

    async def purge(self, before: str) -> int:
        def purge(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute("DROP TRIGGER queries_no_delete")
                cuts = connection.execute(
                    "SELECT q.stream, q.sequence_number, q.record_hash FROM queries q JOIN ("
                    "  SELECT stream, max(sequence_number) AS last FROM queries WHERE received_at < ? GROUP BY stream"
                    ") p ON q.stream = p.stream AND q.sequence_number = p.last", (before,)).fetchall()
                deleted = 0
                for stream, sequence, record_hash in cuts:
                    deleted += connection.execute(
                        "DELETE FROM queries WHERE stream = ? AND sequence_number <= ?", (stream, sequence)).rowcount
                    connection.execute(
                        "INSERT INTO purges VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
                        " ON CONFLICT (stream) DO UPDATE SET sequence_number = excluded.sequence_number,"
                        " record_hash = excluded.record_hash, purged_at = excluded.purged_at",
                        (stream, sequence, record_hash))
                connection.execute(_GUARDS["queries_no_delete"])
                connection.execute("COMMIT")
                return deleted
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        return await self._run(purge)

    async def charges(self, start: str, end: str) -> list[dict[str, Any]]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {CHARGE_COLUMNS} FROM charges WHERE charged_at >= ? AND charged_at < ? ORDER BY charged_at",
            (start, end)).fetchall())
        return [charge_from_row(r, time=str) for r in rows]

    async def attributions(self, start: str, end: str) -> list[dict[str, Any]]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT {ATTRIBUTION_COLUMNS} FROM attributions WHERE charged_at >= ? AND charged_at < ? "
            "ORDER BY charged_at", (start, end)).fetchall())
        return [attribution_from_row(r, time=str) for r in rows]

    async def spend(self, since: str) -> dict[str, float]:
        rows = await self._run(lambda c: c.execute(
            "SELECT cost_center, sum(cost) FROM charges WHERE charged_at >= ? GROUP BY cost_center",
            (since,)).fetchall())
        return {r[0]: float(r[1] or 0.0) for r in rows}

    async def add_access_event(self, event: AccessEvent, *, requires: str | None = None) -> bool:
        row = event_row(event, time=format_time)
        marks = ", ".join("?" * len(EVENT_FIELDS))
        sql = (f"INSERT OR IGNORE INTO access_request_events ({EVENT_COLUMNS}) SELECT {marks} WHERE ? IS NULL OR "
               "EXISTS (SELECT 1 FROM access_request_events WHERE request_id = ? AND event = ?)")
        inserted = await self._run(lambda c: c.execute(sql, (*row, requires, event.request_id, requires)).rowcount)
        return bool(inserted)

    async def access_events(self, after: int = 0) -> list[AccessEvent]:
        rows = await self._run(lambda c: c.execute(
            f"SELECT id, {EVENT_COLUMNS} FROM access_request_events WHERE id > ? ORDER BY id", (after,)).fetchall())
        return [event_from_row(r, time=parse_time) for r in rows]

    def backend(self, name: str) -> Backend:
        from gateway.backends.sqlite import SQLiteBackend

        return SQLiteBackend(name=name, path=self.path, schema="audit",
                             tables=[*audit_tables("audit", time_type=VARCHAR), *billing_tables(time_type=VARCHAR),
                                     *access_tables("audit", time_type=VARCHAR)])


MAX_ROWS_PER_INSERT = 256


def insert_rows(connection: sqlite3.Connection, insert: str, rows: Sequence[Sequence[Any]]) -> None:
    """`insert` (an INSERT up to its VALUES) of every row, several rows per statement.

    `executemany` steps its statement once per row, and the sqlite3 module lets go of the GIL around every
    step: on a busy gateway each row then waits for the event loop to give the GIL back (up to the switch
    interval, 5 ms), so a batch of a thousand records took seconds and the store's health probe, queued
    behind it, timed out. Rows go in chunks whose sizes are powers of two up to MAX_ROWS_PER_INSERT (so a
    handful of statement texts serve every batch from the connection's statement cache), each chunk one
    statement: one wait instead of hundreds."""
    if not rows:
        return
    width = len(rows[0])
    largest = max(1, min(MAX_ROWS_PER_INSERT, connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    one = f"({', '.join('?' * width)})"
    start = 0
    while start < len(rows):
        size = min(largest, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start:start + size]
        connection.execute(f"{insert} VALUES {', '.join([one] * size)}", [value for row in chunk for value in row])
        start += size


def _attributed(connection: sqlite3.Connection, events: Sequence[str]) -> set[str]:
    """Of `events`, those whose attributions are already stored (one statement text for any number)."""
    if not events:
        return set()
    rows = connection.execute("SELECT DISTINCT event_id FROM attributions WHERE event_id IN "
                              "(SELECT value FROM json_each(?))", (orjson.dumps(list(events)).decode(),)).fetchall()
    return {r[0] for r in rows}


def _page(connection: sqlite3.Connection, *, after: int, batch: int) -> list[Any]:
    return connection.execute(f"SELECT id, {COLUMNS} FROM queries WHERE id > ? ORDER BY id LIMIT ?",
                              (after, batch)).fetchall()
