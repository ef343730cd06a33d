"""What one query attempt was, once it ended: the facts its audit record and its log line are made of.

The pipeline fills one `QueryOutcome` as the attempt ends and hands it on; `gateway.audit.record` shapes the
audit record from it and `gateway.logs` the log line, so the pipeline stays the order of the stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.identity import Identity
from gateway.relations import ExecutionStats
from gateway.session import Session


@dataclass(frozen=True, kw_only=True)
class QueryOutcome:
    query_id: str
    received_at: str  # ISO 8601, UTC
    sql: str  # as the client sent it
    session: Session
    principal: Identity  # who authenticated
    identity: Identity  # who the statement ran as (the principal, or whom it impersonated)
    statement_kind: str  # "select", "show", ... or "unplanned"
    state: str  # FINISHED | FAILED
    error: GatewayError | None
    stats: ExecutionStats
    elapsed_seconds: float
    queued_seconds: float
    backend: str | None  # the catalog it ran on, if it reached one
    dialect: str  # of `planned_sql`
    planned_sql: str | None  # the backend SQL with the mask key's sentinel named (`MaskKey.display`), never valid
    tables: Sequence[str] | None  # read, as planned; None when planning did not get that far
    columns_read: Mapping[str, Sequence[str]]
    policy_version: str | None
    rules: Sequence[str]
    cache_hit: bool
    resource_group: str | None
    queue_wait_seconds: float | None  # in the resource group's queue, when admitted through one
