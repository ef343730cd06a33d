"""One audit record: what was attempted, by whom, what was decided and what came of it.

Records never carry secrets: no tokens, API keys or passwords (only a token's `kid`/`jti`), and no session
properties or extra credentials. With `audit.redact_literals` the SQL texts keep their shape but every
literal becomes `?`.

`FIELDS` is the one schema of a record: stores create their columns from it, auditors' SQL sees it as
`gateway.audit.queries`, and the canonical encoding that is hashed covers exactly these fields.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from gateway.audit.text import storable

# decision values
SUCCESS = "success"  # the statement ran and its result was delivered
DENIED = "denied"  # policy or authentication refused it
FAILED = "failed"  # syntax, not found, backend or internal errors
CANCELED = "canceled"  # the client cancelled or abandoned it, or a cap stopped it
REJECTED = "rejected"  # refused before a query existed (bad request, draining, audit store unavailable)
DECISIONS = (SUCCESS, DENIED, FAILED, CANCELED, REJECTED)

_DENIAL_ERRORS = frozenset({"PERMISSION_DENIED", "AUTHENTICATION_FAILED"})
_CANCEL_ERRORS = frozenset({"USER_CANCELED", "ABANDONED_QUERY", "ADMINISTRATIVELY_KILLED", "EXCEEDED_TIME_LIMIT",
                            "SERVER_SHUTTING_DOWN"})
_REJECT_ERRORS = frozenset({"QUERY_QUEUE_FULL", "AUDIT_UNAVAILABLE"})


def decision_for(error_name: str | None) -> str:
    if error_name is None:
        return SUCCESS
    if error_name in _DENIAL_ERRORS:
        return DENIED
    if error_name in _CANCEL_ERRORS:
        return CANCELED
    if error_name in _REJECT_ERRORS:
        return REJECTED
    return FAILED


def utc_now() -> str:
    """`format_time` of now (isoformat is several times cheaper than strftime; every attempt takes two)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")[:26] + "Z"


def format_time(value: datetime) -> str:
    """The one text form of a record's times: UTC, microseconds, `Z` (sorts and compares as text)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(slots=True, kw_only=True)
class AuditRecord:
    """Field order is the column order of `gateway.audit.queries`. `stream`, `sequence`, `prev_hash` and
    `record_hash` are filled when the record is sealed into its chain (chain.Chain.seal)."""

    event_id: str
    stream: str = ""
    sequence_number: int = 0
    received_at: str
    finished_at: str
    query_id: str | None = None
    user_name: str | None = None
    user_groups: list[str] = field(default_factory=list)
    auth_method: str | None = None
    token_kid: str | None = None
    token_jti: str | None = None
    client_address: str | None = None
    source: str | None = None
    client_tags: list[str] = field(default_factory=list)
    frontend: str = "trino_http"
    catalog_name: str | None = None
    schema_name: str | None = None
    sql: str | None = None
    rewritten_sql: str | None = None
    statement_type: str | None = None
    tables_read: list[str] = field(default_factory=list)
    columns_read: dict[str, list[str]] = field(default_factory=dict)  # table -> columns
    policy_version: str | None = None
    rules_applied: list[str] = field(default_factory=list)
    decision: str = SUCCESS
    reason: str | None = None
    error_name: str | None = None
    error_message: str | None = None
    resource_group: str | None = None
    queue_wait_ms: float | None = None
    execution_ms: float | None = None
    row_count: int | None = None
    byte_count: int | None = None
    cache_hit: bool = False
    backend: str | None = None
    backend_query_id: str | None = None
    cost: float | None = None
    cost_center: str | None = None
    prev_hash: str = ""
    record_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (shallow: lists are shared with the record)."""
        return dict(zip(FIELD_NAMES, _field_values(self), strict=True))

    def make_storable(self) -> None:
        """Escape what no store can keep (NUL, lone surrogates; see text.py), before the record is sealed."""
        for name in FIELD_NAMES:
            value = getattr(self, name)
            if isinstance(value, str | list | dict):
                setattr(self, name, storable(value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """A record from its journal line. Raises ValueError for a line whose fields are not a record's (a
        corrupted journal): it is quarantined, never retried against the store."""
        for name, kind in FIELDS:
            value = data.get(name)
            if value is not None and not _SHAPES[kind](value):
                raise ValueError(f"field {name} is not {kind}")
        for name in ("event_id", "stream", "received_at", "finished_at"):
            if not data.get(name):
                raise ValueError(f"field {name} is missing")
        return cls(**{name: data[name] for name in FIELD_NAMES if name in data})


# name -> storage kind; stores map kinds to column types, the gateway catalog to Trino types
KINDS: dict[str, str] = {
    "sequence_number": "int", "row_count": "int", "byte_count": "int",
    "queue_wait_ms": "float", "execution_ms": "float", "cost": "float",
    "cache_hit": "bool",
    "received_at": "time", "finished_at": "time",
    "user_groups": "json", "client_tags": "json", "tables_read": "json", "columns_read": "json",
    "rules_applied": "json",
}
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(AuditRecord))
FIELDS: tuple[tuple[str, str], ...] = tuple((name, KINDS.get(name, "text")) for name in FIELD_NAMES)
_field_values = operator.attrgetter(*FIELD_NAMES)  # one C call for every field, in order



def _is_time(value: Any) -> bool:
    try:
        parse_time(value)
        return True
    except (TypeError, ValueError):
        return False


_SHAPES: dict[str, Any] = {
    "text": lambda v: isinstance(v, str), "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool), "bool": lambda v: isinstance(v, bool),
    "time": _is_time, "json": lambda v: isinstance(v, list | dict),
}


# -- literal redaction ---------------------------------------------------------------------------------------

_QUOTED = re.compile(r"'(?:[^']|'')*'")


def redact_sql(sql: str | None, dialect: str = "trino") -> str | None:
    """`sql` with every literal replaced by `?`. Unparseable text is redacted whole: its literals cannot be
    told from the rest."""
    if sql is None:
        return None
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except (SqlglotError, RecursionError):
        return "<statement redacted: not parseable>"

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Literal):
            return exp.Placeholder()
        return node

    try:
        return tree.transform(replace, copy=False).sql(dialect=dialect)
    except (SqlglotError, RecursionError):
        return "<statement redacted: not parseable>"


def redact_message(message: str | None) -> str | None:
    """Quoted values in an error message (a syntax error may quote the statement) become '…'."""
    return _QUOTED.sub("'…'", message) if message is not None else None
