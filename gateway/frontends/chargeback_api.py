"""GET /api/chargeback — cost totals from the ledger, for finance.

    GET /api/chargeback?from=2026-11-01&to=2026-12-01&by=cost_center|owner|user|table

`from` is inclusive, `to` exclusive (dates are midnight UTC; ISO 8601 times are accepted). Readable by the
groups in `cost.finance_groups` (default finance, admins); others get 403. Every call is audited (frontend
`api`), allowed or not. The body is `gateway.cost.report.Report.to_dict()`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.audit.record import DENIED, FAILED, SUCCESS, AuditRecord
from gateway.audit.stores import AuditStore, StoreUnavailable
from gateway.cost.cli import report_from
from gateway.cost.report import ReportError, parse_bound
from gateway.errors import PermissionDenied
from gateway.frontends.api_common import audited, authenticated, refuse
from gateway.identity import Identity
from gateway.pipeline import Pipeline

_PARAMS = {"from", "to", "by"}


class ChargebackApi:
    def __init__(self, *, pipeline: Pipeline, store: AuditStore) -> None:
        self.pipeline = pipeline
        self.store = store

    def routes(self) -> list[Route]:
        return [Route("/api/chargeback", self.chargeback, methods=["GET"])]

    async def chargeback(self, request: Request) -> Response:
        identity = await authenticated(request, self.pipeline)
        if isinstance(identity, Response):
            return identity
        return await audited(request, self.pipeline, identity, statement_type="chargeback_api",
                             answer=lambda record: self._answer(request, identity, record))

    async def _answer(self, request: Request, identity: Identity, record: AuditRecord) -> Response:
        try:
            self.pipeline.access.require_finance(identity, "/api/chargeback")
        except PermissionDenied as denied:
            return refuse(record, 403, "PERMISSION_DENIED", denied.message, decision=DENIED)
        params = request.query_params
        try:
            unknown = set(params) - _PARAMS
            if unknown:
                raise ReportError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
            if "from" not in params or "to" not in params:
                raise ReportError("from and to are required (dates like 2026-11-01)")
            start, end = parse_bound(params["from"], "from"), parse_bound(params["to"], "to")
            report = await report_from(self.store, by=params.get("by", "cost_center"), start=start, end=end)
        except ReportError as error:
            return refuse(record, 400, "INVALID_FUNCTION_ARGUMENT", str(error), decision=FAILED)
        except StoreUnavailable:
            message = "The audit store (which holds the cost ledger) is unavailable"
            return refuse(record, 503, "AUDIT_UNAVAILABLE", message, decision=FAILED)
        record.decision, record.reason, record.row_count = SUCCESS, "finance group", len(report.lines)
        return JSONResponse(report.to_dict())
