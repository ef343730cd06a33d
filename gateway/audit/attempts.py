"""The audit record of each kind of attempt: a query that ended (`query_record`) and a request refused
before it became a query (`refused_request_record`). The one place that maps what happened onto the record's
fields, so every frontend's attempts are recorded alike."""

from __future__ import annotations

import uuid

from gateway.audit.record import DENIED, REJECTED, AuditRecord, decision_for, redact_message, redact_sql, utc_now
from gateway.query_outcome import QueryOutcome
from gateway.sql.columns import tables_named

# A statement that failed before planning is searched for the tables it names only up to this size: the
# search parses it, and the attempt that failed may be a hostile statement sent to be expensive.
TABLES_NAMED_LIMIT = 16 * 1024  # bytes of SQL


def query_record(outcome: QueryOutcome, *, redact: bool) -> AuditRecord:
    """`redact`: audit.redact_literals — literals in SQL and messages replaced before anything is stored."""
    error, session, identity, stats = outcome.error, outcome.session, outcome.identity, outcome.stats
    message = error.message if error is not None else None
    shown_message = redact_message(message) if redact else message
    tables = outcome.tables
    if tables is None:
        tables = tables_named(outcome.sql, catalog=session.catalog, schema=session.schema) if (
            error is not None and len(outcome.sql) <= TABLES_NAMED_LIMIT) else []
    planned = outcome.planned_sql
    return AuditRecord(
        event_id=uuid.uuid4().hex,
        received_at=outcome.received_at,
        finished_at=utc_now(),
        query_id=outcome.query_id,
        user_name=session.user,
        user_groups=sorted(identity.groups),
        auth_method=identity.auth_method,
        token_kid=getattr(outcome.principal, "token_kid", None),  # set by JWT identities that carry one
        token_jti=getattr(outcome.principal, "token_jti", None),
        client_address=session.client_address,
        frontend=session.frontend,
        source=session.source,
        client_tags=sorted(session.client_tags),
        catalog_name=session.catalog,
        schema_name=session.schema,
        sql=redact_sql(outcome.sql) if redact else outcome.sql,
        rewritten_sql=redact_sql(planned, outcome.dialect) if redact and planned is not None else planned,
        statement_type=outcome.statement_kind,
        tables_read=list(tables),
        columns_read={t: list(c) for t, c in outcome.columns_read.items()},
        policy_version=outcome.policy_version,
        rules_applied=list(outcome.rules),
        decision=decision_for(error.error_name if error is not None else None),
        reason=shown_message if error is not None else "allowed by policy",
        error_name=error.error_name if error is not None else None,
        error_message=shown_message,
        execution_ms=round((outcome.elapsed_seconds - outcome.queued_seconds) * 1000, 3),  # queue wait apart
        row_count=stats.rows,
        byte_count=stats.bytes,
        backend=outcome.backend,
        backend_query_id=stats.backend_query_id,
        cost_center=identity.cost_center,
        cache_hit=outcome.cache_hit,
        resource_group=outcome.resource_group,
        queue_wait_ms=round(outcome.queue_wait_seconds * 1000, 3) if outcome.queue_wait_seconds is not None else None,
    )


def refused_request_record(*, client_address: str | None, user: str | None, error_name: str, reason: str,
                           message: str, source: str | None, sql: str | None, auth_method: str | None,
                           frontend: str, redact: bool) -> AuditRecord:
    """A request refused before it became a query (authentication, bad body or headers, draining). `user` is
    what the client claimed, unverified."""
    now = utc_now()
    return AuditRecord(
        event_id=uuid.uuid4().hex, received_at=now, finished_at=now, user_name=(user or "")[:256] or None,
        auth_method=auth_method, client_address=client_address, frontend=frontend,
        sql=redact_sql(sql) if redact else sql, source=(source or "")[:256] or None,
        decision=DENIED if error_name == "AUTHENTICATION_FAILED" else REJECTED, reason=reason,
        error_name=error_name,
        error_message=redact_message(message) if redact else message)
