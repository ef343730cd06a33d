"""What every JSON admin endpoint shares: authenticating the caller as the Trino endpoint does, and one
error body shape."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.audit.record import FAILED, AuditRecord
from gateway.errors import AuthenticationFailed
from gateway.frontends.trino_headers import credentials_from_headers
from gateway.identity import Identity
from gateway.pipeline import Pipeline


def json_error(status: int, name: str, message: str) -> Response:
    return JSONResponse({"error": {"message": message, "errorName": name}}, status_code=status)


def refuse(record: AuditRecord, status: int, name: str, message: str, *, decision: str = FAILED) -> Response:
    """Answer an audited API call with an error, and say so in its audit record."""
    record.decision, record.reason, record.error_name, record.error_message = decision, message, name, message
    return json_error(status, name, message)


async def authenticated(request: Request, pipeline: Pipeline) -> Identity | Response:
    """The caller's identity, or the 401 response to send (the failure is recorded by the pipeline)."""
    client = request.client.host if request.client else None
    try:
        return await pipeline.authenticate(credentials_from_headers(request.headers, client_address=client))
    except AuthenticationFailed as failure:
        return json_error(401, "PERMISSION_DENIED", failure.message)
