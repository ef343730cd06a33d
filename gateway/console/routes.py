"""/console: the routes of the console, behind its security headers; nothing when `console.enabled` is false.

    GET  /console/                      home: who is signed in, the pages they may open
    GET  /console/login, POST           sign in (a user name in dev mode; a JWT or service account + API key)
    POST /console/logout                sign out
    GET  /console/audit                 audit search (user, query id, table, decision, time range; paged)
    GET  /console/audit/{id}            one record: original and rewritten SQL, rules applied, decision, cost
    GET  /console/chargeback            cost by cost center, owner, user or table, with a chart
    GET  /console/queue                 running and queued queries per resource group
    POST /console/queue/{id}/kill       kill a query
    GET  /console/access                access requests (pending by default)
    POST /console/access/request        request access to a table
    POST /console/access/{id}/{action}  approve, deny or revoke a request
    GET  /console/explain               what the policy decides for an identity and a table or statement
    GET  /console/static/...            the stylesheet
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from gateway.audit.stores import AuditStore
from gateway.config import Settings
from gateway.console.pages import Pages
from gateway.console.web import HERE, Console, SecurityHeaders
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.secret_file import read_secret


def console_routes(*, pipeline: Pipeline, store: AuditStore, settings: Settings, metrics: Metrics) -> list[BaseRoute]:
    config = settings.console
    if not config.enabled:
        return []
    key, _source = read_secret(env=config.key_env, file=config.key_file, setting="console",
                               what="the console session key")
    console = Console(pipeline=pipeline, settings=config, key=key, tls=settings.server.tls_cert is not None,
                      metrics=metrics)
    pages = Pages(console=console, store=store, default_catalog=settings.default_catalog,
                  default_schema=settings.backends[0].schema)
    page = console.page
    routes = [
        Route("/", page("home", pages.home)),
        Route("/login", console.sign_in_form, methods=["GET"]),
        Route("/login", console.sign_in, methods=["POST"]),
        Route("/logout", page("sign_out", console.sign_out), methods=["POST"]),
        Route("/audit", page("audit", pages.audit_search)),
        Route("/audit/{record_id}", page("audit_record", pages.audit_record)),
        Route("/chargeback", page("chargeback", pages.chargeback)),
        Route("/queue", page("queue", pages.queue)),
        Route("/queue/{query_id}/kill", page("kill", pages.kill), methods=["POST"]),
        Route("/access", page("access", pages.access)),
        Route("/access/request", page("access_request", pages.request_access), methods=["POST"]),
        Route("/access/{request_id}/{action}", page("access_decide", pages.decide_access), methods=["POST"]),
        Route("/explain", page("explain", pages.explain)),
        Mount("/static", app=StaticFiles(directory=HERE / "static")),
    ]

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        await console.error_page(request, 404, f"No such console page: {request.url.path[:200]}")(scope, receive, send)

    return [Mount("/console", app=SecurityHeaders(Router(routes, default=not_found)))]
