"""A client session as the pipeline sees it, and the changes a statement makes to it.

Protocol-neutral: the Trino frontend fills `Session` from X-Trino-* headers and turns `SessionChange`
back into X-Trino-Set-* response headers; the PostgreSQL-wire frontend keeps both in its connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class Session:
    user: str
    source: str | None = None
    catalog: str | None = None
    schema: str | None = None
    time_zone: str | None = None
    language: str | None = None
    properties: Mapping[str, str] = field(default_factory=_empty)
    prepared_statements: Mapping[str, str] = field(default_factory=_empty)
    client_tags: frozenset[str] = frozenset()
    client_info: str | None = None
    transaction_id: str | None = None
    trace_token: str | None = None
    client_address: str | None = None
    dialect: str = "trino"  # the SQL dialect the client writes (sqlglot name): trino over HTTP, postgres on pgwire
    frontend: str = "trino_http"  # the protocol it came by, as audit records name it


@dataclass(kw_only=True)
class SessionChange:
    """What a session statement changes; the client applies it (Trino: through response headers)."""

    set_catalog: str | None = None
    set_schema: str | None = None
    set_properties: dict[str, str] = field(default_factory=dict)
    reset_properties: list[str] = field(default_factory=list)
    added_prepared: dict[str, str] = field(default_factory=dict)
    deallocated_prepared: list[str] = field(default_factory=list)
    started_transaction_id: str | None = None
    clear_transaction: bool = False
