"""JSON endpoints of just-in-time access (gateway/grants/).

    POST /api/access/requests                 {table, columns?, reason, duration: "2h" | "30m" | seconds} -> 201
    GET  /api/access/requests?status=pending  the requests the caller may see (own; as approver; all for
                                              auditors and access admins), newest first
    POST /api/access/requests/{id}/approve    {comment?}   an approver of the table, never the requester
    POST /api/access/requests/{id}/deny       {comment?}
    POST /api/access/requests/{id}/revoke     {comment?}   the requester, an approver or an access admin

Callers authenticate as on the Trino endpoint. Every call is audited (frontend `api`), allowed or not, and
each request, decision and revocation is also an event in `gateway.audit.access_request_events`. Answers
are `AccessRequest.to_dict()` (a list under "requests" for GET); errors the /api error JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.audit.record import DENIED, FAILED, SUCCESS, AuditRecord
from gateway.errors import GatewayError, NotFound, PermissionDenied, UserError
from gateway.frontends.api_common import audited, authenticated, refuse
from gateway.grants.service import AccessRequests, parse_grant_duration
from gateway.identity import Identity
from gateway.pipeline import Pipeline

MAX_BODY_BYTES = 64 * 1024
_VERBS = ("approve", "deny", "revoke")

Answer = Callable[[Identity, dict[str, Any]], Awaitable[Response]]


class AccessApi:
    def __init__(self, *, pipeline: Pipeline, requests: AccessRequests) -> None:
        self.pipeline = pipeline
        self.requests = requests

    def routes(self) -> list[Route]:
        return [Route("/api/access/requests", self.create, methods=["POST"]),
                Route("/api/access/requests", self.list, methods=["GET"]),
                Route("/api/access/requests/{id}/{verb}", self.decide, methods=["POST"])]

    async def create(self, request: Request) -> Response:
        async def answer(identity: Identity, body: dict[str, Any]) -> Response:
            table, reason, columns = body.get("table"), body.get("reason", ""), body.get("columns") or []
            if not isinstance(table, str) or not isinstance(reason, str):
                raise UserError("table and reason must be strings", error_name="INVALID_FUNCTION_ARGUMENT")
            if isinstance(columns, str):
                columns = columns.split(",")
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise UserError("columns must be a list of column names", error_name="INVALID_FUNCTION_ARGUMENT")
            duration = parse_grant_duration(body.get("duration"))
            if duration is None:
                raise UserError("duration must be like \"2h\", \"30m\" or a number of seconds",
                                error_name="INVALID_FUNCTION_ARGUMENT")
            created = await self.requests.request(identity, table=table, columns=tuple(columns), reason=reason,
                                                  duration_seconds=duration)
            return JSONResponse(created.to_dict(), status_code=201)

        return await self._serve(request, answer, body=True)

    async def list(self, request: Request) -> Response:
        async def answer(identity: Identity, body: dict[str, Any]) -> Response:
            unknown = set(request.query_params) - {"status"}
            if unknown:
                raise UserError(f"unknown parameter(s): {', '.join(sorted(unknown))}",
                                error_name="INVALID_FUNCTION_ARGUMENT")
            found = await self.requests.list(identity, status=request.query_params.get("status"))
            return JSONResponse({"requests": [r.to_dict() for r in found]})

        return await self._serve(request, answer, body=False)

    async def decide(self, request: Request) -> Response:
        request_id, verb = request.path_params["id"], request.path_params["verb"]

        async def answer(identity: Identity, body: dict[str, Any]) -> Response:
            if verb not in _VERBS:
                raise NotFound(f"No such endpoint: {request.url.path}")
            comment = body.get("comment", "")
            if not isinstance(comment, str):
                raise UserError("comment must be a string", error_name="INVALID_FUNCTION_ARGUMENT")
            act = {"approve": self.requests.approve, "deny": self.requests.deny, "revoke": self.requests.revoke}[verb]
            return JSONResponse((await act(identity, request_id, comment=comment)).to_dict())

        return await self._serve(request, answer, body=True)

    async def _serve(self, request: Request, answer: Answer, *, body: bool) -> Response:
        identity = await authenticated(request, self.pipeline)
        if isinstance(identity, Response):
            return identity

        async def run(record: AuditRecord) -> Response:
            try:
                parsed = await _json_body(request) if body else {}
                response = await answer(identity, parsed)
            except GatewayError as error:
                status, decision = _status(error)
                return refuse(record, status, error.error_name, error.message, decision=decision)
            record.decision, record.reason = SUCCESS, "access request"
            return response

        return await audited(request, self.pipeline, identity, statement_type="access_request_api", answer=run)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise UserError(f"The request body is larger than {MAX_BODY_BYTES} bytes",
                            error_name="INVALID_FUNCTION_ARGUMENT")
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise UserError("The request body is not JSON", error_name="INVALID_FUNCTION_ARGUMENT") from None
    if not isinstance(parsed, dict):
        raise UserError("The request body must be a JSON object", error_name="INVALID_FUNCTION_ARGUMENT")
    return parsed


def _status(error: GatewayError) -> tuple[int, str]:
    if isinstance(error, PermissionDenied):
        return 403, DENIED
    if isinstance(error, NotFound):
        return 404, FAILED
    if isinstance(error, UserError):
        return 400, FAILED
    return 503 if error.error_name == "AUDIT_UNAVAILABLE" else 500, FAILED
