"""The interface of an audit store, and the conversions every store shares."""

from __future__ import annotations

import abc
import contextlib
import json
import operator
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson

from gateway.audit.chain import Checkpoint, orjson_alike
from gateway.audit.record import FIELD_NAMES, FIELDS, AuditRecord
from gateway.audit.search import Search
from gateway.backends.base import Backend
from gateway.cost.model import Charge
from gateway.grants.model import AccessEvent
from gateway.relations import Column, Table
from gateway.types import BIGINT, BOOLEAN, DOUBLE, VARCHAR, SqlType


class StoreUnavailable(Exception):
    """The store cannot take or give records right now (connection refused or lost, disk error, no answer
    in time)."""


class RecordsRefused(Exception):
    """The store is up but refuses these records (a value it cannot keep, a constraint): retrying the same
    batch can never succeed, so the trail finds the refused record and quarantines it."""


def reason(error: BaseException, timeout_seconds: float | None = None) -> str:
    """A log-worthy reason for a driver error; some (timeouts) have no message of their own."""
    text = str(error).strip()
    if isinstance(error, TimeoutError) or not text:
        within = f" within {timeout_seconds:g} s" if timeout_seconds is not None else " in time"
        return f"no answer{within} ({type(error).__name__}{': ' + text if text else ''})"
    return text


class AuditStore(abc.ABC):
    """Append-only: records and checkpoints are inserted, never updated or deleted (the store refuses both,
    by trigger, and for PostgreSQL also by privileges). Inserting a record already stored is a no-op, so a
    batch whose acknowledgement was lost can be written again."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect; create or migrate the schema. Raises StoreUnavailable."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def write(self, records: Sequence[AuditRecord], charges: Sequence[Charge] = ()) -> None:
        """Insert `records` (in chain order) and the cost ledger's `charges` of those records in one
        transaction. Raises StoreUnavailable, or RecordsRefused when the store refuses their contents."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """One round trip to the store (the health probe); raises StoreUnavailable. The caller bounds it."""

    @abc.abstractmethod
    async def write_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    @abc.abstractmethod
    def scan(self, batch: int = 5000) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
        """Every record as (storage id, fields), in storage order, in batches (verify, export)."""

    @abc.abstractmethod
    async def checkpoints(self) -> list[Checkpoint]: ...

    @abc.abstractmethod
    async def purges(self) -> dict[str, tuple[int, str]]:
        """stream -> (last purged sequence, its hash): where a retention job legitimately cut a chain's head."""

    @abc.abstractmethod
    async def search(self, search: Search) -> list[tuple[int, dict[str, Any]]]:
        """Matching records, newest first."""

    @abc.abstractmethod
    async def purge(self, before: str) -> int:
        """The retention job (admin rights): delete records received before `before` (a record time), keeping
        each chain verifiable. Returns the number deleted."""

    @abc.abstractmethod
    async def charges(self, start: str, end: str) -> list[dict[str, Any]]:
        """The ledger's charges with start <= charged_at < end (record times), oldest first."""

    @abc.abstractmethod
    async def attributions(self, start: str, end: str) -> list[dict[str, Any]]:
        """The ledger's attributions with start <= charged_at < end."""

    @abc.abstractmethod
    async def spend(self, since: str) -> dict[str, float]:
        """cost center -> total cost charged since `since` (seeds the budget counters at start)."""

    @abc.abstractmethod
    async def add_access_event(self, event: AccessEvent, *, requires: str | None = None) -> bool:
        """Insert one access request event (gateway/grants/tables.py), unless that request already has one of
        its kind (each happens at most once) or, with `requires`, has no event of that kind yet. True when it
        was inserted. Raises StoreUnavailable."""

    @abc.abstractmethod
    async def access_events(self, after: int = 0) -> list[AccessEvent]:
        """Access request events stored after event id `after`, in storage order."""

    @abc.abstractmethod
    def backend(self, name: str) -> Backend:
        """The `gateway` catalog over this store: auditors' SQL reads `audit.queries` and friends."""


def json_text(value: Any) -> str:
    """A list or dict field as stored: compact, sorted keys, UTF-8 as is (orjson; the standard library for
    what orjson writes otherwise or refuses: floats, lone surrogates)."""
    if orjson_alike(value):
        with contextlib.suppress(TypeError):
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


_all_values = operator.attrgetter(*FIELD_NAMES)
_JSON_AT = tuple(i for i, (_, kind) in enumerate(FIELDS) if kind == "json")
_BOOL_AT = tuple(i for i, (_, kind) in enumerate(FIELDS) if kind == "bool")
_TIME_AT = tuple(i for i, (_, kind) in enumerate(FIELDS) if kind == "time")


def row_values(record: AuditRecord, *, bool_as_int: bool, time: Callable[[str], Any]) -> list[Any]:
    """The record's column values in FIELDS order, as the store's driver takes them (every batch of records
    passes here on the event loop: only the few fields that need it are converted)."""
    values: list[Any] = list(_all_values(record))
    for i in _JSON_AT:
        values[i] = json_text(values[i])
    if bool_as_int:
        for i in _BOOL_AT:
            values[i] = int(values[i])
    if time is not str:
        for i in _TIME_AT:
            values[i] = time(values[i])
    return values


def record_fields(row: Sequence[Any], *, time: Any) -> dict[str, Any]:
    """A stored row (columns in FIELDS order) back to the record's own values."""
    result: dict[str, Any] = {}
    for (name, kind), value in zip(FIELDS, row, strict=True):
        if value is not None:
            if kind == "json":
                value = json.loads(value)
            elif kind == "bool":
                value = bool(value)
            elif kind == "time":
                value = time(value)
            elif kind == "float":
                value = float(value)
        result[name] = value
    return result


COLUMNS = ", ".join(FIELD_NAMES)


def audit_tables(schema: str, *, time_type: SqlType) -> list[Table]:
    """What the `gateway` catalog shows, whatever the store: known without asking it (so the catalog loads
    while the store is down)."""
    kinds = {"text": VARCHAR, "int": BIGINT, "float": DOUBLE, "bool": BOOLEAN, "json": VARCHAR, "time": time_type}
    queries = tuple(Column(name, kinds[kind]) for name, kind in FIELDS)
    by_name = {c.name: c for c in queries}
    access = tuple(by_name[n] for n in ("event_id", "stream", "sequence_number", "received_at", "user_name",
                                        "user_groups", "source", "statement_type", "decision", "error_name"))
    access += (Column("table_name", VARCHAR), Column("column_name", VARCHAR))
    checkpoints = (Column("stream", VARCHAR), Column("sequence_number", BIGINT), Column("record_hash", VARCHAR),
                   Column("written_at", time_type), Column("final", BOOLEAN))
    return [
        Table(schema=schema, name="queries", columns=queries, comment="one record per attempt"),
        Table(schema=schema, name="table_access", columns=access, kind="VIEW",
              comment="one row per table and column an attempt touched"),
        Table(schema=schema, name="checkpoints", columns=checkpoints, comment="anchors of each stream's chain"),
    ]
