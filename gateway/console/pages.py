"""The console's pages: audit search and record, chargeback, the queue with kill, access requests, policy
explain. Each decides what it may show through `gateway.access` (the rights the JSON APIs use: reading
`gateway.audit.queries`, `cost.finance_groups`, `workload.admin_groups`, the access-request service's own
rules) and reads through the same objects the APIs do. Pages that read audit records, cost or policy
decisions are themselves audited (frontend `console`), allowed or not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.audit.record import DECISIONS, DENIED, FAILED, FIELD_NAMES, SUCCESS, AuditRecord
from gateway.audit.search import MAX_ID, PARAMETERS, Search, SearchError, parse_id, search_from_params
from gateway.audit.stores import AuditStore, StoreUnavailable
from gateway.console.chart import bar_chart
from gateway.console.web import Console, Visit, status_of
from gateway.cost.cli import report_from
from gateway.cost.report import DIMENSIONS, ReportError, parse_bound
from gateway.errors import GatewayError, PermissionDenied
from gateway.frontends.api import AUDIT_TABLE
from gateway.frontends.api_common import audited, mark_refused
from gateway.identity import Identity
from gateway.identity.model import attributes_from_pairs
from gateway.session import Session

log = logging.getLogger("gateway.console")

ACCESS_STATUSES = ("pending", "approved", "denied", "revoked", "expired")
ACCESS_ACTIONS = ("approve", "deny", "revoke")
DURATIONS = ((1800, "30 minutes"), (3600, "1 hour"), (7200, "2 hours"), (14400, "4 hours"), (28800, "8 hours"),
             (86400, "1 day"))
SQL_FIELDS = frozenset({"sql", "rewritten_sql"})


class AccessRequestService(Protocol):
    """The part of gateway.grants.service.AccessRequests the console uses (the shared JIT contract)."""

    async def request(self, identity: Identity, *, table: str, columns: tuple[str, ...] = (), reason: str,
                      duration_seconds: int) -> Any: ...

    async def list(self, identity: Identity, *, status: str | None = None) -> list[Any]: ...

    async def approve(self, identity: Identity, request_id: str, *, comment: str = "") -> Any: ...

    async def deny(self, identity: Identity, request_id: str, *, comment: str = "") -> Any: ...

    async def revoke(self, identity: Identity, request_id: str, *, comment: str = "") -> Any: ...

    def can_decide(self, identity: Identity, request: Any) -> bool: ...


class Pages:
    def __init__(self, *, console: Console, store: AuditStore, default_catalog: str,
                 default_schema: str | None) -> None:
        self.console = console
        self.pipeline = console.pipeline
        self.store = store
        self.default_catalog = default_catalog
        self.default_schema = default_schema

    def render(self, visit: Visit, template: str, context: dict[str, Any], *, status: int = 200) -> Response:
        return self.console.render(visit.request, template, context, status=status, session=visit.session)

    async def _audited(self, visit: Visit, statement_type: str, answer: Callable[[AuditRecord], Awaitable[Response]],
                       **fields: Any) -> Response:
        """The page's audit record, as /api calls have theirs (frontend `console`); a bug still audited."""

        async def guarded(record: AuditRecord) -> Response:
            try:
                return await answer(record)
            except GatewayError as error:
                decision = DENIED if isinstance(error, PermissionDenied) else FAILED
                mark_refused(record, error.error_name, error.message, decision=decision)
                return self.console.error_page(visit, status_of(error), error.message)
            except Exception:  # a bug: a page without its text, and the visit still audited
                log.exception("console page %s failed", visit.request.url.path)
                mark_refused(record, "GENERIC_INTERNAL_ERROR", "Internal error in the gateway")
                return self.console.error_page(visit, 500, "Internal error in the gateway")

        return await audited(visit.request, self.pipeline, visit.identity, statement_type=statement_type,
                             answer=guarded, frontend="console", **fields)

    def _refuse(self, visit: Visit, record: AuditRecord, status: int, name: str, message: str, *,
                decision: str = FAILED, template: str = "error.html", context: dict[str, Any] | None = None
                ) -> Response:
        mark_refused(record, name, message, decision=decision)
        return self.render(visit, template, {"status": status, "message": message, **(context or {}),
                                             "error": message}, status=status)

    # -- home --------------------------------------------------------------------------------------------------

    async def home(self, visit: Visit) -> Response:
        return self.render(visit, "home.html", {"expires_at": _clock(visit.session.expires_at)})

    # -- audit -------------------------------------------------------------------------------------------------

    async def audit_search(self, visit: Visit) -> Response:
        return await self._audited(visit, "console_audit", lambda record: self._audit_search(visit, record),
                                   tables_read=[AUDIT_TABLE], columns_read={AUDIT_TABLE: []},
                                   policy_version=self.pipeline.policies.current.version)

    async def _audit_search(self, visit: Visit, record: AuditRecord) -> Response:
        filters = {name: value for name in PARAMETERS if (value := visit.param(name)) is not None}
        context: dict[str, Any] = {"filters": filters, "decisions": DECISIONS, "rows": [], "next": None}
        if not self.console.may_read_audit(visit.identity):
            return self._refuse(visit, record, 403, "PERMISSION_DENIED",
                                f"Access Denied: the audit pages are for those who may read {AUDIT_TABLE}",
                                decision=DENIED)
        try:
            search = search_from_params(filters, default_limit=self.console.settings.page_size)
            rows = await self.store.search(search)
        except SearchError as error:
            return self._refuse(visit, record, 400, "INVALID_FUNCTION_ARGUMENT", str(error),
                                template="audit.html", context=context)
        except StoreUnavailable:
            return self._refuse(visit, record, 503, "AUDIT_UNAVAILABLE", "The audit store is unavailable",
                                template="audit.html", context=context)
        record.decision, record.reason, record.row_count = SUCCESS, "allowed by policy", len(rows)
        context["rows"] = [{"id": row_id, **fields} for row_id, fields in rows]
        if len(rows) == search.limit:
            context["next"] = "/console/audit?" + urlencode({**filters, "before_id": str(rows[-1][0])})
        return self.render(visit, "audit.html", context)

    async def audit_record(self, visit: Visit) -> Response:
        return await self._audited(visit, "console_audit", lambda record: self._audit_record(visit, record),
                                   tables_read=[AUDIT_TABLE], columns_read={AUDIT_TABLE: []},
                                   policy_version=self.pipeline.policies.current.version)

    async def _audit_record(self, visit: Visit, record: AuditRecord) -> Response:
        if not self.console.may_read_audit(visit.identity):
            return self._refuse(visit, record, 403, "PERMISSION_DENIED",
                                f"Access Denied: the audit pages are for those who may read {AUDIT_TABLE}",
                                decision=DENIED)
        text = visit.request.path_params["record_id"]
        try:
            record_id = parse_id(text, "record id", None, MAX_ID - 1)
            rows = await self.store.search(Search(before_id=record_id + 1, limit=1))
        except SearchError:
            rows = []
        except StoreUnavailable:
            return self._refuse(visit, record, 503, "AUDIT_UNAVAILABLE", "The audit store is unavailable")
        if not rows or str(rows[0][0]) != text:
            return self._refuse(visit, record, 404, "NOT_FOUND", f"No audit record {text[:40]}")
        row_id, fields = rows[0]
        record.decision, record.reason, record.row_count = SUCCESS, "allowed by policy", 1
        shown = [(name, _shown(fields.get(name)), name in SQL_FIELDS) for name in FIELD_NAMES]
        return self.render(visit, "record.html", {"id": row_id, "record": fields, "fields": shown})

    # -- chargeback --------------------------------------------------------------------------------------------

    async def chargeback(self, visit: Visit) -> Response:
        return await self._audited(visit, "console_chargeback", lambda record: self._chargeback(visit, record))

    async def _chargeback(self, visit: Visit, record: AuditRecord) -> Response:
        today = datetime.now(UTC).date()
        start_text = visit.param("from") or today.replace(day=1).isoformat()
        end_text = visit.param("to") or (today + timedelta(days=1)).isoformat()
        by = visit.param("by") or "cost_center"
        context: dict[str, Any] = {"start": start_text, "end": end_text, "by": by, "dimensions": DIMENSIONS,
                                   "report": None, "chart": None}
        if not self.console.may_read_chargeback(visit.identity):
            groups = ", ".join(sorted(self.pipeline.access.groups.finance))
            return self._refuse(visit, record, 403, "PERMISSION_DENIED",
                                f"Access Denied: chargeback is for the groups {groups} (cost.finance_groups)",
                                decision=DENIED)
        try:
            report = await report_from(self.store, by=by, start=parse_bound(start_text, "from"),
                                       end=parse_bound(end_text, "to"))
        except ReportError as error:
            return self._refuse(visit, record, 400, "INVALID_FUNCTION_ARGUMENT", str(error),
                                template="chargeback.html", context=context)
        except StoreUnavailable:
            return self._refuse(visit, record, 503, "AUDIT_UNAVAILABLE",
                                "The audit store (which holds the cost ledger) is unavailable",
                                template="chargeback.html", context=context)
        record.decision, record.reason, record.row_count = SUCCESS, "finance group", len(report.lines)
        context.update(report=report, chart=bar_chart(report.lines, report.total_cost))
        return self.render(visit, "chargeback.html", context)

    # -- the queue ---------------------------------------------------------------------------------------------

    async def queue(self, visit: Visit, *, status: int = 200, error: str | None = None) -> Response:
        snapshot = await self.pipeline.workload.snapshot(visit.identity)
        access = self.pipeline.access
        for query in snapshot["queries"]:
            query["may_kill"] = access.may_manage_query(visit.identity, query["user"])
        killed = visit.request.query_params.get("killed")
        return self.render(visit, "queue.html", {"snapshot": snapshot, "error": error,
                                                 "notice": f"Query {killed} was killed." if killed else None},
                           status=status)

    async def kill(self, visit: Visit) -> Response:
        query_id = visit.request.path_params["query_id"]
        try:
            await self.pipeline.workload.kill(query_id, visit.param("message"), visit.identity)
        except GatewayError as failure:
            return await self.queue(visit, status=status_of(failure), error=failure.message)
        return RedirectResponse("/console/queue?" + urlencode({"killed": query_id}), status_code=303)

    # -- access requests ---------------------------------------------------------------------------------------

    def _access_service(self, request: Request) -> AccessRequestService | None:
        service: AccessRequestService | None = getattr(request.app.state, "access_requests", None)
        return service

    async def access(self, visit: Visit, *, status: int = 200, error: str | None = None) -> Response:
        service = self._access_service(visit.request)
        wanted = visit.request.query_params.get("status", "pending")
        context: dict[str, Any] = {"enabled": service is not None, "requests": [], "status": wanted,
                                   "statuses": ACCESS_STATUSES, "durations": DURATIONS, "error": error,
                                   "notice": visit.request.query_params.get("done")}
        if service is None:
            return self.render(visit, "access.html", context, status=status)
        if wanted not in (*ACCESS_STATUSES, "all"):
            return self.render(visit, "access.html", {**context, "error": f"unknown status {wanted[:40]!r}"},
                               status=400)
        requests = await service.list(visit.identity, status=None if wanted == "all" else wanted)
        context["requests"] = [(r, service.can_decide(visit.identity, r)) for r in requests]
        return self.render(visit, "access.html", context, status=status)

    async def decide_access(self, visit: Visit) -> Response:
        service = self._access_service(visit.request)
        action, request_id = visit.request.path_params["action"], visit.request.path_params["request_id"]
        if service is None or action not in ACCESS_ACTIONS:
            return self.console.error_page(visit, 404, "Access requests are not enabled on this gateway"
                                           if service is None else f"No such action {action[:20]!r}")
        try:
            decided = await getattr(service, action)(visit.identity, request_id, comment=visit.param("comment") or "")
        except GatewayError as failure:
            return await self.access(visit, status=status_of(failure), error=failure.message)
        return RedirectResponse("/console/access?" + urlencode({"done": f"Request {decided.id} is {decided.status}."}),
                                status_code=303)

    async def request_access(self, visit: Visit) -> Response:
        service = self._access_service(visit.request)
        if service is None:
            return self.console.error_page(visit, 404, "Access requests are not enabled on this gateway")
        table, reason = visit.param("table"), visit.param("reason")
        duration = visit.param("duration") or ""
        if table is None or reason is None or not duration.isdigit() or int(duration) not in dict(DURATIONS):
            return await self.access(visit, status=400, error="A request needs a table, a reason and a duration.")
        columns = tuple(c.strip() for c in (visit.param("columns") or "").split(",") if c.strip())
        try:
            made = await service.request(visit.identity, table=table, columns=columns, reason=reason,
                                         duration_seconds=int(duration))
        except GatewayError as failure:
            return await self.access(visit, status=status_of(failure), error=failure.message)
        return RedirectResponse("/console/access?" + urlencode({"done": f"Request {made.id} is {made.status}."}),
                                status_code=303)

    # -- policy explain ----------------------------------------------------------------------------------------

    async def explain(self, visit: Visit) -> Response:
        asked = {name: visit.param(name) or "" for name in ("user", "groups", "attributes", "source", "table", "sql")}
        context: dict[str, Any] = {"asked": asked, "result": None}
        if not asked["sql"] and not asked["table"]:
            return self.render(visit, "explain.html", context)
        return await self._audited(visit, "console_explain", lambda record: self._explain(visit, record, context),
                                   policy_version=self.pipeline.policies.current.version)

    async def _explain(self, visit: Visit, record: AuditRecord, context: dict[str, Any]) -> Response:
        asked = context["asked"]
        source = asked["source"] or None
        try:
            subject = self._subject(visit.identity, asked, source)
        except ValueError as error:
            return self._refuse(visit, record, 400, "INVALID_FUNCTION_ARGUMENT", str(error), template="explain.html",
                                context=context)
        except PermissionDenied as denied:
            return self._refuse(visit, record, 403, "PERMISSION_DENIED", denied.message, decision=DENIED,
                                template="explain.html", context=context)
        sql = asked["sql"] or f"SELECT * FROM {asked['table']}"
        session = Session(user=subject.user, source=source, catalog=self.default_catalog,
                          schema=self.default_schema, frontend="console")
        result: dict[str, Any] = {"identity": subject, "sql": sql, "tables": [], "allowed": False,
                                  "policy_version": self.pipeline.policies.current.version[:12]}
        try:
            plan = await self.pipeline.plan(sql, session, subject)
        except GatewayError as error:
            result.update(error_name=error.error_name, message=error.message)
        else:
            display = self.pipeline.planner.mask_key.display
            result.update(allowed=True, kind=plan.statement_kind, target=plan.target, rules=plan.rules,
                          rewritten=display(plan.sql) if plan.sql is not None else None,
                          tables=[self.pipeline.access.table(subject, str(t), source) for t in plan.tables])
        record.decision, record.reason = SUCCESS, f"explained for {subject.user}"
        record.tables_read = [str(t.table) for t in result["tables"]]
        return self.render(visit, "explain.html", {**context, "result": result})

    def _subject(self, caller: Identity, asked: dict[str, str], source: str | None) -> Identity:
        """Whom to explain for: the caller; another user as the impersonation rules let the caller act; any
        identity (groups and attributes as typed) for those who may read the audit trail, which already
        shows every user's decisions and rewritten SQL."""
        user = asked["user"] or caller.user
        hypothetical = bool(asked["groups"] or asked["attributes"])
        if user == caller.user and not hypothetical:
            return caller
        if self.console.may_read_audit(caller):
            if not hypothetical:
                authenticator = self.pipeline.authenticator
                return authenticator.dev_identity(user) if authenticator.mode == "dev" else Identity.create(user)
            groups = [g.strip() for g in asked["groups"].split(",") if g.strip()]
            attributes = attributes_from_pairs(line for line in asked["attributes"].splitlines() if line.strip())
            return Identity.create(user, groups=groups, attributes=attributes)
        if not hypothetical and self.pipeline.access.may_act_as(caller, user, source):
            return caller.acting_as(user)
        raise PermissionDenied(f"explaining for another identity ({user[:64]}) needs the right to read "
                               f"{AUDIT_TABLE}, or an impersonation rule that lets {caller.user} act as them")


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

