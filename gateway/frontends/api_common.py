"""What every JSON admin endpoint shares: authenticating the caller as the Trino endpoint does, auditing the
call, and one error body shape."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.audit.record import FAILED, AuditRecord, utc_now
from gateway.errors import AuthenticationFailed
from gateway.frontends.trino_headers import credentials_from_headers
from gateway.identity import Identity
from gateway.pipeline import Pipeline

log = logging.getLogger("gateway.api")


def json_error(status: int, name: str, message: str) -> Response:
    return JSONResponse({"error": {"message": message, "errorName": name}}, status_code=status)


def refuse(record: AuditRecord, status: int, name: str, message: str, *, decision: str = FAILED) -> Response:
    """Answer an audited API call with an error, and say so in its audit record."""
    mark_refused(record, name, message, decision=decision)
    return json_error(status, name, message)


def mark_refused(record: AuditRecord, name: str, message: str, *, decision: str = FAILED) -> None:
    """Say in an audited call's record that it was refused (`refuse` answers JSON; the console a page)."""
    record.decision, record.reason, record.error_name, record.error_message = decision, message, name, message


async def authenticated(request: Request, pipeline: Pipeline) -> Identity | Response:
    """The caller's identity, or the 401 response to send (the failure is recorded by the pipeline)."""
    client = request.client.host if request.client else None
    try:
        return await pipeline.authenticate(credentials_from_headers(request.headers, client_address=client))
    except AuthenticationFailed as failure:
        return json_error(401, "PERMISSION_DENIED", failure.message)


async def audited(request: Request, pipeline: Pipeline, identity: Identity, *, statement_type: str,
                  answer: Callable[[AuditRecord], Awaitable[Response]], frontend: str = "api",
                  **fields: Any) -> Response:
    """Run `answer` for an authenticated API call (or console page) and journal its audit record (before the
    response leaves). `answer` fills in the outcome; `fields` are record fields known up front (tables read)."""
    started = datetime.now(UTC)
    record = AuditRecord(event_id=uuid.uuid4().hex, received_at=utc_now(), finished_at="",
                         user_name=identity.user, user_groups=sorted(identity.groups),
                         auth_method=identity.auth_method,
                         client_address=request.client.host if request.client else None,
                         source=request.headers.get("x-trino-source"), frontend=frontend,
                         sql=f"{request.method} {request.url.path}?{request.url.query}",
                         statement_type=statement_type, cost_center=identity.cost_center, **fields)
    try:
        response = await answer(record)
    except Exception:  # a bug: answered without its text, and the attempt still audited
        log.exception("serving %s %s failed", request.method, request.url.path)
        response = refuse(record, 500, "GENERIC_INTERNAL_ERROR", "Internal error in the gateway")
    record.finished_at = utc_now()
    record.execution_ms = round((datetime.now(UTC) - started).total_seconds() * 1000, 3)
    pipeline.audit.append(record)
    return response
