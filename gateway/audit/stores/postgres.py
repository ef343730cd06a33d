"""The production audit store: PostgreSQL through asyncpg, write-once.

Schema `audit` (created and migrated by the gateway, under an advisory lock so replicas can start together):
`queries` (one row per record), `checkpoints`, `purges` (where the retention job cut each chain), the view
`table_access`, and triggers refusing UPDATE, DELETE and TRUNCATE on records and checkpoints.

Permissions: give the gateway a role with INSERT and SELECT only, and let `audit.admin_store` (an owner
role) run the migration; it grants exactly that to the gateway's role. Without `admin_store` the gateway's
own role migrates (and owns the tables: fine for development, not for WORM). The retention job (`gateway
audit purge`) runs with the owner's rights and is the only path around the triggers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from gateway.audit.chain import Checkpoint
from gateway.audit.record import FIELDS, AuditRecord, format_time, parse_time
from gateway.audit.search import Search
from gateway.audit.stores.base import (
    COLUMNS,
    AuditStore,
    RecordsRefused,
    StoreUnavailable,
    audit_tables,
    reason,
    record_fields,
    row_values,
)
from gateway.backends.base import Backend
from gateway.backends.postgres import CONNECTION_ERRORS
from gateway.cost.ledger import (
    ATTRIBUTION_COLUMNS,
    ATTRIBUTION_FIELDS,
    CHARGE_COLUMNS,
    CHARGE_FIELDS,
    attribution_from_row,
    billing_tables,
    charge_from_row,
    charge_rows,
    postgres_ddl,
)
from gateway.cost.model import Charge
from gateway.grants.model import AccessEvent
from gateway.grants.tables import EVENT_COLUMNS, EVENT_FIELDS, access_tables, event_from_row, event_row
from gateway.grants.tables import postgres_ddl as access_ddl
from gateway.types import timestamp

T = TypeVar("T")

SCHEMA_VERSION = 3  # 2: the cost ledger (schema billing); 3: access requests
_TYPES = {"text": "text", "int": "bigint", "float": "double precision", "bool": "boolean", "json": "text",
          "time": "timestamptz"}
_NOT_NULL = {"event_id", "stream", "sequence_number", "received_at", "finished_at", "decision", "prev_hash",
             "record_hash", "frontend", "cache_hit"}
LOCK_KEY = 7_301_994_512  # pg_advisory_xact_lock key for migrations


def _migration_1() -> str:
    columns = ",\n  ".join(f"{name} {_TYPES[kind]}{' NOT NULL' if name in _NOT_NULL else ''}"
                           for name, kind in FIELDS)
    return f"""
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE audit.schema_version (version integer NOT NULL);
CREATE TABLE audit.queries (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  {columns},
  UNIQUE (stream, sequence_number)
);
CREATE INDEX queries_received ON audit.queries (received_at);
CREATE INDEX queries_user ON audit.queries (user_name, received_at);
CREATE TABLE audit.checkpoints (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream text NOT NULL, sequence_number bigint NOT NULL, record_hash text NOT NULL,
  written_at timestamptz NOT NULL, final boolean NOT NULL
);
CREATE TABLE audit.purges (
  stream text PRIMARY KEY, sequence_number bigint NOT NULL, record_hash text NOT NULL,
  purged_at timestamptz NOT NULL DEFAULT now()
);
CREATE VIEW audit.table_access AS
  SELECT q.event_id, q.stream, q.sequence_number, q.received_at, q.user_name, q.user_groups, q.source,
         q.statement_type, q.decision, q.error_name, t.key AS table_name, c.name AS column_name
  FROM audit.queries q
  CROSS JOIN LATERAL jsonb_each(q.columns_read::jsonb) t
  LEFT JOIN LATERAL jsonb_array_elements_text(t.value) AS c(name) ON true;
CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'queries'
     AND current_setting('gateway.audit_purge', true) = 'on' THEN
    RETURN OLD;  -- the retention job (owner rights; the gateway's role has no DELETE privilege)
  END IF;
  RAISE EXCEPTION 'audit.% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER queries_append_only BEFORE UPDATE OR DELETE ON audit.queries
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER queries_no_truncate BEFORE TRUNCATE ON audit.queries
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON audit.checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON audit.checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
INSERT INTO audit.schema_version VALUES (1);
"""


def _migration_2() -> str:
    return postgres_ddl() + "INSERT INTO audit.schema_version VALUES (2);\n"


def _migration_3() -> str:
    return access_ddl() + "INSERT INTO audit.schema_version VALUES (3);\n"


MIGRATIONS = {1: _migration_1, 2: _migration_2, 3: _migration_3}

_INSERT_ACCESS_EVENT = (
    f"INSERT INTO audit.access_request_events ({EVENT_COLUMNS}) SELECT "
    + ", ".join(f"${i}::{_TYPES[kind]}" for i, (_, kind) in enumerate(EVENT_FIELDS, start=1))
    + f" WHERE ${len(EVENT_FIELDS) + 1}::text IS NULL OR EXISTS (SELECT 1 FROM audit.access_request_events "
    f"WHERE request_id = $1 AND event = ${len(EVENT_FIELDS) + 1}::text) ON CONFLICT DO NOTHING")

_INSERT = (f"INSERT INTO audit.queries ({COLUMNS}) SELECT * FROM unnest("
           + ", ".join(f"${i}::{_TYPES[kind]}[]" for i, (_, kind) in enumerate(FIELDS, start=1))
           + ") ON CONFLICT (stream, sequence_number) DO NOTHING")

_INSERT_CHARGE = (f"INSERT INTO billing.charges ({CHARGE_COLUMNS}) VALUES "
                  f"({', '.join(f'${i}' for i in range(1, len(CHARGE_FIELDS) + 1))}) ON CONFLICT (event_id) DO NOTHING")
_INSERT_ATTRIBUTION = (f"INSERT INTO billing.attributions ({ATTRIBUTION_COLUMNS}) VALUES "
                       f"({', '.join(f'${i}' for i in range(1, len(ATTRIBUTION_FIELDS) + 1))})")

# InternalClientError: a connection left mid-operation by a cut; it is dropped and reopened like the others
_ERRORS = (*CONNECTION_ERRORS, asyncpg.PostgresError, asyncpg.InternalClientError)
# the server refuses a value (class 22) or a constraint (class 23), or the driver cannot encode one: the
# same batch would be refused again, so these are not outages
_REFUSALS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.exceptions._base.DataError,
             UnicodeError)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresStore(AuditStore):
    def __init__(self, dsn: str, *, admin_dsn: str | None = None, timeout_seconds: float = 10.0) -> None:
        self.url = dsn
        self._admin_dsn = admin_dsn
        self.timeout_seconds = timeout_seconds  # connect, and each command: a hung server is an outage
        self._connection: Any = None  # the write connection, reopened after a failure
        self._probe: Any = None  # the health probe's own connection, so a stuck write never hides a hang
        self._access: Any = None  # access requests' connection (_on_access_connection)
        self._access_lock = asyncio.Lock()

    def _reason(self, error: BaseException) -> str:
        if isinstance(error, asyncpg.PostgresError):  # the primary message only: DETAIL may quote the row
            return str(error.message or type(error).__name__)
        return reason(error, self.timeout_seconds)

    async def _connect(self, dsn: str | None = None) -> Any:
        try:
            return await asyncpg.connect(dsn or self.url, timeout=self.timeout_seconds,
                                         command_timeout=self.timeout_seconds,
                                         server_settings={"application_name": "gateway-audit"})
        except _ERRORS as error:
            raise StoreUnavailable(f"cannot connect to the PostgreSQL audit store: {self._reason(error)}") from None

    async def ping(self) -> None:
        try:
            if self._probe is None or self._probe.is_closed():
                self._probe = await self._connect()
            await self._probe.fetchval("SELECT 1")
        except _ERRORS as error:
            self._drop_probe()
            raise StoreUnavailable(f"the PostgreSQL audit store does not answer: {self._reason(error)}") from None
        except BaseException:  # cancelled by the caller's timeout: the connection is mid-query, unusable
            self._drop_probe()
            raise

    def _drop_probe(self) -> None:
        if self._probe is not None:
            self._probe.terminate()
            self._probe = None

    async def _writer(self) -> Any:
        if self._connection is None or self._connection.is_closed():
            self._connection = await self._connect()
        return self._connection

    def _broken(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None

    async def open(self) -> None:
        connection = await self._writer()
        try:
            version = await self._version(connection)
            if version < SCHEMA_VERSION:
                await self._migrate(str(await connection.fetchval("SELECT current_user")))
            elif version > SCHEMA_VERSION:
                raise StoreUnavailable(f"the audit schema has version {version}, newer than this gateway's "
                                       f"{SCHEMA_VERSION}")
        except _ERRORS as error:
            self._broken()
            raise StoreUnavailable(f"cannot prepare the PostgreSQL audit schema: {self._reason(error)}") from None

    async def _version(self, connection: Any) -> int:
        if await connection.fetchval("SELECT to_regclass('audit.schema_version')") is None:
            return 0
        return int(await connection.fetchval("SELECT coalesce(max(version), 0) FROM audit.schema_version") or 0)

    async def _migrate(self, gateway_role: str) -> None:
        connection = await self._connect(self._admin_dsn)
        try:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
                version = await self._version(connection)
                for number in range(version + 1, SCHEMA_VERSION + 1):
                    await connection.execute(MIGRATIONS[number]())
                owner = await connection.fetchval("SELECT current_user")
                if self._admin_dsn is not None and gateway_role != owner:
                    role = _quote(gateway_role)
                    await connection.execute(
                        f"GRANT USAGE ON SCHEMA audit TO {role};"
                        f"GRANT SELECT, INSERT ON audit.queries, audit.checkpoints TO {role};"
                        f"GRANT SELECT ON audit.table_access, audit.purges, audit.schema_version TO {role};"
                        f"GRANT USAGE ON SCHEMA billing TO {role};"
                        f"GRANT SELECT, INSERT ON billing.charges, billing.attributions TO {role};"
                        f"GRANT SELECT, INSERT ON audit.access_request_events TO {role};"
                        f"GRANT SELECT ON audit.access_requests TO {role};")
        except asyncpg.InsufficientPrivilegeError as error:
            raise StoreUnavailable(f"the audit schema needs creating or migrating and this role may not: {error}; "
                                   "set audit.admin_store to an owner role") from None
        finally:
            await connection.close()

    async def close(self) -> None:
        self._drop_probe()
        if self._access is not None:
            self._access.terminate()
            self._access = None
        if self._connection is not None:
            try:
                await self._connection.close(timeout=5)
            except _ERRORS:
                self._connection.terminate()
            self._connection = None

    async def write(self, records: Sequence[AuditRecord], charges: Sequence[Charge] = ()) -> None:
        try:
            rows = [row_values(r, bool_as_int=False, time=parse_time) for r in records]
            columns = [list(column) for column in zip(*rows, strict=True)]
            charged, attributed = charge_rows(charges, time=parse_time, bool_as_int=False)
        except (TypeError, ValueError) as error:  # a field the store's types cannot hold (a corrupted journal)
            raise RecordsRefused(f"a record cannot be converted for the PostgreSQL audit store: {error}") from None
        try:
            connection = await self._writer()
            if not charged:
                await connection.execute(_INSERT, *columns)
                return
            async with connection.transaction():
                await connection.execute(_INSERT, *columns)
                stored = {r[0] for r in await connection.fetch(
                    "SELECT DISTINCT event_id FROM billing.attributions WHERE event_id = any($1::text[])",
                    [row[0] for row in charged])}  # a batch written again
                await connection.executemany(_INSERT_CHARGE, charged)
                await connection.executemany(_INSERT_ATTRIBUTION, [a for a in attributed if a[0] not in stored])
        except _REFUSALS as error:
            raise RecordsRefused(f"the PostgreSQL audit store refused the records: {self._reason(error)}") from None
        except _ERRORS as error:
            self._broken()
            raise StoreUnavailable(f"writing to the PostgreSQL audit store failed: {self._reason(error)}") from None

    async def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        try:
            connection = await self._writer()
            await connection.execute(
                "INSERT INTO audit.checkpoints (stream, sequence_number, record_hash, written_at, final) "
                "VALUES ($1, $2, $3, $4, $5)", checkpoint.stream, checkpoint.sequence_number, checkpoint.record_hash,
                parse_time(checkpoint.written_at), checkpoint.final)
        except _ERRORS as error:
            self._broken()
            raise StoreUnavailable(f"writing a checkpoint failed: {self._reason(error)}") from None

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        connection = await self._connect()
        try:
            return list(await connection.fetch(sql, *args))
        except _ERRORS as error:
            raise StoreUnavailable(f"reading the PostgreSQL audit store failed: {self._reason(error)}") from None
        finally:
            await connection.close()

    async def scan(self, batch: int = 5000) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
        last = 0
        while True:
            rows = await self._fetch(f"SELECT id, {COLUMNS} FROM audit.queries WHERE id > $1 ORDER BY id LIMIT $2",
                                     last, batch)
            if not rows:
                return
            last = rows[-1][0]
            yield [(row[0], record_fields(tuple(row)[1:], time=format_time)) for row in rows]

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._fetch("SELECT stream, sequence_number, record_hash, written_at, final "
                                 "FROM audit.checkpoints ORDER BY id")
        return [Checkpoint(r[0], r[1], r[2], format_time(r[3]), r[4]) for r in rows]

    async def purges(self) -> dict[str, tuple[int, str]]:
        rows = await self._fetch("SELECT stream, sequence_number, record_hash FROM audit.purges")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def search(self, search: Search) -> list[tuple[int, dict[str, Any]]]:
        condition, values = search.where(lambda n: f"${n}", lambda d: d)
        sql = (f"SELECT id, {COLUMNS} FROM audit.queries WHERE {condition} ORDER BY id DESC "
               f"LIMIT ${len(values) + 1}")
        rows = await self._fetch(sql, *values, search.limit)
        return [(row[0], record_fields(tuple(row)[1:], time=format_time)) for row in rows]

    async def purge(self, before: str) -> int:
        connection = await self._connect(self._admin_dsn)
        try:
            async with connection.transaction():
                await connection.execute("SET LOCAL gateway.audit_purge = 'on'")
                cuts = await connection.fetch(
                    "SELECT q.stream, q.sequence_number, q.record_hash FROM audit.queries q JOIN ("
                    "  SELECT stream, max(sequence_number) AS last FROM audit.queries WHERE received_at < $1"
                    "  GROUP BY stream) p ON q.stream = p.stream AND q.sequence_number = p.last", parse_time(before))
                deleted = 0
                for stream, sequence, record_hash in cuts:
                    status = await connection.execute(
                        "DELETE FROM audit.queries WHERE stream = $1 AND sequence_number <= $2", stream, sequence)
                    deleted += int(status.split()[-1])
                    await connection.execute(
                        "INSERT INTO audit.purges (stream, sequence_number, record_hash) VALUES ($1, $2, $3) "
                        "ON CONFLICT (stream) DO UPDATE SET sequence_number = excluded.sequence_number, "
                        "record_hash = excluded.record_hash, purged_at = now()", stream, sequence, record_hash)
                return deleted
        except _ERRORS as error:
            raise StoreUnavailable(f"purging the PostgreSQL audit store failed: {error}") from None
        finally:
            await connection.close()

    async def charges(self, start: str, end: str) -> list[dict[str, Any]]:
        rows = await self._fetch(f"SELECT {CHARGE_COLUMNS} FROM billing.charges WHERE charged_at >= $1 "
                                 "AND charged_at < $2 ORDER BY charged_at", parse_time(start), parse_time(end))
        return [charge_from_row(tuple(r), time=format_time) for r in rows]

    async def attributions(self, start: str, end: str) -> list[dict[str, Any]]:
        rows = await self._fetch(f"SELECT {ATTRIBUTION_COLUMNS} FROM billing.attributions WHERE charged_at >= $1 "
                                 "AND charged_at < $2 ORDER BY charged_at", parse_time(start), parse_time(end))
        return [attribution_from_row(tuple(r), time=format_time) for r in rows]

    async def spend(self, since: str) -> dict[str, float]:
        rows = await self._fetch("SELECT cost_center, sum(cost) FROM billing.charges WHERE charged_at >= $1 "
                                 "GROUP BY cost_center", parse_time(since))
        return {r[0]: float(r[1] or 0.0) for r in rows}

    async def _on_access_connection(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """Access requests have their own connection (the write connection belongs to the trail's batches),
        used by one call at a time and reopened after a failure."""
        async with self._access_lock:
            try:
                if self._access is None or self._access.is_closed():
                    self._access = await self._connect()
                return await call(self._access)
            except _ERRORS as error:
                if self._access is not None:
                    self._access.terminate()
                    self._access = None
                raise StoreUnavailable(f"the PostgreSQL audit store (access requests) failed: "
                                       f"{self._reason(error)}") from None

    async def add_access_event(self, event: AccessEvent, *, requires: str | None = None) -> bool:
        row = event_row(event, time=lambda t: t)
        status = await self._on_access_connection(lambda c: c.execute(_INSERT_ACCESS_EVENT, *row, requires))
        return bool(int(status.split()[-1]))

    async def access_events(self, after: int = 0) -> list[AccessEvent]:
        rows = await self._on_access_connection(lambda c: c.fetch(
            f"SELECT id, {EVENT_COLUMNS} FROM audit.access_request_events WHERE id > $1 ORDER BY id", after))
        return [event_from_row(tuple(r), time=lambda t: t) for r in rows]

    def backend(self, name: str) -> Backend:
        from gateway.backends.postgres import PostgresBackend

        time_type = timestamp(6, with_time_zone=True)
        return PostgresBackend(name=name, dsn=self.url,
                               tables=[*audit_tables("audit", time_type=time_type),
                                       *billing_tables(time_type=time_type),
                                       *access_tables("audit", time_type=time_type)])
