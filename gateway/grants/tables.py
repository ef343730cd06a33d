"""Where access requests live: one append-only events table and a view of each request's current status,
in the audit store's database (next to the audit records, so they survive restarts and every replica
sharing the store sees the same requests).

    access_request_events   one row per request, approval, denial, revocation and expiry
    access_requests         view: one row per request, its status computed from its events and the clock

SQLite keeps them in the audit file; PostgreSQL in schema `audit`. Both refuse UPDATE and DELETE. Unique
indexes make each request's decision, revocation and expiry happen at most once, whichever replica (or
racing approver) writes first. Through the gateway they are `gateway.audit.access_requests` and
`gateway.audit.access_request_events` (readable per `policies/tables.yaml`, like `gateway.audit.queries`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from gateway.grants.model import AccessEvent
from gateway.relations import Column, Table
from gateway.types import BIGINT, VARCHAR, SqlType

EVENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("request_id", "text"), ("event", "text"), ("actor", "text"), ("at", "time"), ("table_name", "text"),
    ("columns", "json"), ("reason", "text"), ("duration_seconds", "int"), ("expires_at", "time"),
    ("comment", "text"))
EVENT_COLUMNS = ", ".join(name for name, _ in EVENT_FIELDS)
REQUEST_COLUMNS = ("id", "requester", "table_name", "columns", "reason", "duration_seconds", "status",
                   "requested_at", "decided_by", "decided_at", "expires_at", "comment")

# Each of these happens at most once per request (a decision is approved or denied, never both).
_ONCE = {"requested": "('requested')", "decided": "('approved', 'denied')", "revoked": "('revoked')",
         "expired": "('expired')"}


def _view(now: str, table: str) -> str:
    """The requests view over `table` (the events), `now` the database's current time in its time type."""
    def one(kind: str, column: str) -> str:
        return f"(SELECT {column} FROM {table} e WHERE e.request_id = r.request_id AND e.event = '{kind}')"

    approved_at, expires = one("approved", "at"), one("approved", "expires_at")
    revoked_at = one("revoked", "at")
    last = (f"(SELECT {{column}} FROM {table} e WHERE e.request_id = r.request_id "
            "AND e.event IN ('approved', 'denied', 'revoked') ORDER BY e.id DESC LIMIT 1)")
    status = (f"CASE WHEN {one('denied', 'at')} IS NOT NULL THEN 'denied' "
              f"WHEN {approved_at} IS NULL THEN 'pending' "
              f"WHEN {revoked_at} IS NOT NULL AND {revoked_at} < {expires} THEN 'revoked' "
              f"WHEN {one('expired', 'at')} IS NOT NULL OR {expires} <= {now} THEN 'expired' "
              "ELSE 'approved' END")
    return (f"SELECT r.request_id AS id, r.actor AS requester, r.table_name, r.columns, r.reason, "
            f"r.duration_seconds, {status} AS status, r.at AS requested_at, "
            f"{last.format(column='actor')} AS decided_by, {last.format(column='at')} AS decided_at, "
            f"{expires} AS expires_at, coalesce({last.format(column='comment')}, '') AS comment "
            f"FROM {table} r WHERE r.event = 'requested'")


def _columns(types: dict[str, str]) -> str:
    return ", ".join(f"{n} {types[k]}{' NOT NULL' if n in ('request_id', 'event', 'actor', 'at') else ''}"
                     for n, k in EVENT_FIELDS)


def _once(prefix: str, table: str) -> str:
    return "\n".join(f"CREATE UNIQUE INDEX {prefix}access_{name}_once ON {table} (request_id) WHERE event IN {kinds};"
                     for name, kinds in _ONCE.items())


def sqlite_ddl() -> str:
    columns = _columns({"text": "TEXT", "time": "TEXT", "int": "INTEGER", "json": "TEXT"})
    once = _once("IF NOT EXISTS ", "access_request_events")
    guards = "\n".join(f"CREATE TRIGGER IF NOT EXISTS access_request_events_no_{action} BEFORE {action.upper()} "
                       "ON access_request_events BEGIN SELECT RAISE(ABORT, 'access request events are append-only'); "
                       "END;" for action in ("update", "delete"))
    return f"""
CREATE TABLE IF NOT EXISTS access_request_events (id INTEGER PRIMARY KEY AUTOINCREMENT, {columns});
{once}
{guards}
CREATE VIEW IF NOT EXISTS access_requests AS {_view("strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", "access_request_events")};
"""


def postgres_ddl() -> str:
    columns = _columns({"text": "text", "time": "timestamptz", "int": "bigint", "json": "text"})
    once = _once("", "audit.access_request_events")
    return f"""
CREATE TABLE audit.access_request_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {columns});
{once}
CREATE TRIGGER access_request_events_append_only BEFORE UPDATE OR DELETE ON audit.access_request_events
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER access_request_events_no_truncate BEFORE TRUNCATE ON audit.access_request_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE VIEW audit.access_requests AS {_view("now()", "audit.access_request_events")};
REVOKE ALL ON audit.access_request_events, audit.access_requests FROM PUBLIC;
"""


def access_tables(schema: str, *, time_type: SqlType) -> list[Table]:
    """What the `gateway` catalog shows for them, whatever the store."""
    kinds = {"text": VARCHAR, "int": BIGINT, "json": VARCHAR, "time": time_type}
    events = (Column("id", BIGINT), *(Column(n, kinds[k]) for n, k in EVENT_FIELDS))
    request_kinds = {"duration_seconds": BIGINT, "requested_at": time_type, "decided_at": time_type,
                     "expires_at": time_type}
    requests = tuple(Column(n, request_kinds.get(n, VARCHAR)) for n in REQUEST_COLUMNS)
    return [
        Table(schema=schema, name="access_requests", columns=requests, kind="VIEW",
              comment="one row per just-in-time access request, with its current status"),
        Table(schema=schema, name="access_request_events", columns=events,
              comment="every request, approval, denial, revocation and expiry of an access request"),
    ]


def event_row(event: AccessEvent, *, time: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The event's column values in EVENT_FIELDS order, as the store's driver takes them."""
    return (event.request_id, event.event, event.actor, time(event.at), event.table,
            json.dumps(list(event.columns)), event.reason, event.duration_seconds,
            time(event.expires_at) if event.expires_at is not None else None, event.comment)


def event_from_row(row: Sequence[Any], *, time: Callable[[Any], datetime]) -> AccessEvent:
    """A stored row (id first, then EVENT_FIELDS) back to the event."""
    event_id, request_id, event, actor, at, table, columns, reason, duration, expires_at, comment = row
    return AccessEvent(request_id=request_id, event=event, actor=actor, at=time(at), table=table,
                       columns=tuple(json.loads(columns or "[]")), reason=reason,
                       duration_seconds=int(duration) if duration is not None else None,
                       expires_at=time(expires_at) if expires_at is not None else None, comment=comment or "",
                       event_id=int(event_id))


def once_group(event: str) -> str:
    """The at-most-once group of an event kind (approved and denied share one)."""
    return "decided" if event in ("approved", "denied") else event
