"""JSON endpoints for people and tools that are not SQL clients.

    GET /api/audit     audit records, newest first. Filters: user, query_id, table, decision, since, until (ISO 8601;
                       UTC unless an offset is given); limit (1..10000, default 100); before_id (the `next`
                       link carries it). Readable by whoever the policies let read gateway.audit.queries.

Callers authenticate as on the Trino endpoint (Bearer JWT, Basic API key, or X-Trino-User in dev mode).
Every call is itself audited (frontend `api`), allowed or not.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.audit.record import DENIED, FAILED, SUCCESS, AuditRecord
from gateway.audit.search import SearchError, search_from_params
from gateway.audit.setup import AUDIT_CATALOG
from gateway.audit.stores import AuditStore, StoreUnavailable
from gateway.errors import PermissionDenied
from gateway.frontends.api_common import audited, authenticated, refuse
from gateway.identity import Identity
from gateway.pipeline import Pipeline

AUDIT_TABLE = f"{AUDIT_CATALOG}.audit.queries"


class AuditApi:
    def __init__(self, *, pipeline: Pipeline, store: AuditStore) -> None:
        self.pipeline = pipeline
        self.store = store

    def routes(self) -> list[Route]:
        return [Route("/api/audit", self.audit, methods=["GET"])]

    async def audit(self, request: Request) -> Response:
        identity = await authenticated(request, self.pipeline)
        if isinstance(identity, Response):
            return identity
        source = request.headers.get("x-trino-source")
        return await audited(request, self.pipeline, identity, statement_type="audit_api",
                             answer=lambda record: self._answer(request, identity, source, record),
                             tables_read=[AUDIT_TABLE], columns_read={AUDIT_TABLE: []},
                             policy_version=self.pipeline.policies.current.version)

    async def _answer(self, request: Request, identity: Identity, source: str | None,
                      record: AuditRecord) -> Response:
        try:
            self.pipeline.access.require_table(identity, AUDIT_TABLE, source)
        except PermissionDenied as denied:
            return refuse(record, 403, "PERMISSION_DENIED", denied.message, decision=DENIED)
        try:
            search = search_from_params(request.query_params)
            rows = await self.store.search(search)
        except SearchError as error:
            return refuse(record, 400, "INVALID_FUNCTION_ARGUMENT", str(error), decision=FAILED)
        except StoreUnavailable:
            message = "The audit store is unavailable"
            return refuse(record, 503, "AUDIT_UNAVAILABLE", message, decision=FAILED)
        record.decision, record.reason, record.row_count = SUCCESS, "allowed by policy", len(rows)
        body: dict[str, Any] = {"records": [{"id": row_id, **fields} for row_id, fields in rows], "next": None}
        if len(rows) == search.limit:
            query = {k: v for k, v in request.query_params.items() if k != "before_id"}
            query["before_id"] = str(rows[-1][0])
            body["next"] = f"{request.url.path}?{urlencode(query)}"
        return JSONResponse(body)
