"""The Trino client protocol over HTTP: what unmodified Trino clients (JDBC, trino-python-client, CLI) need.

    POST   /v1/statement                                      submit -> QUEUED with nextUri, as Trino
                                                              (protocol.inline_first_page: first rows)
    GET    /v1/statement/executing/{id}/{slug}/{token}        next page (long-polls up to max_wait)
    DELETE /v1/statement/executing/{id}/{slug}/{token}        cancel -> 204
    HEAD   /v1/statement                                      connection check (JDBC validateConnection)
    GET    /v1/info, /v1/info/state, /v1/status, /v1/node     server information
    GET    /v1/query/{id}                                     infoUri: QueryInfo, also after it ended
    DELETE /v1/query/{id}                                     cancel (trino-js-client, presto-client) -> 204

Query failures are answered as Trino answers them: HTTP 200 with state FAILED and an `error` object.
Requests that cannot become a query (bad body, bad headers, unknown nextUri) get an HTTP error status and a
JSON body naming the problem. Nothing here knows about policies or backends.

Authentication comes first on POST and HEAD /v1/statement: failures answer 401 with `WWW-Authenticate` (the
accepted schemes) and a JSON error saying what was wrong, or 429 with `Retry-After` while the client address
is slowed after repeated failures. Every per-query request (polls, cancels, /v1/query/{id}) is for the
query's owner only (the principal that submitted it) or members of `workload.admin_groups`: anyone else
is told "Query not found", so nobody learns that another user's query exists, and the refusal is audited.
In dev mode a poll without X-Trino-User (presto-client sends none on nextUri) relies on the URI's random
slug, a capability only the submitting client holds; in every other mode each request authenticates.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import __version__
from gateway.config import Settings
from gateway.errors import AuthenticationFailed, GatewayError, InternalError, ProtocolError
from gateway.frontends.trino_headers import change_headers, credentials_from_headers, session_from_headers
from gateway.frontends.trino_queries import Page, QueryRegistry, TrinoQuery
from gateway.frontends.trino_query_info import error_json, node_json, query_info_json, status_json
from gateway.frontends.trino_values import column_json
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.node import duration_text
from gateway.pipeline import Pipeline, QueryState

log = logging.getLogger("gateway.trino")

JSON_TYPE = "application/json"
_JSON_FALLBACK = json.JSONEncoder(separators=(",", ":"))


def _compact(body: dict[str, Any]) -> str:
    """A page's envelope as compact JSON. orjson refuses what the json module writes with escapes (a lone
    surrogate in a quoted message): those few bodies go through the json module."""
    try:
        return orjson.dumps(body).decode()
    except orjson.JSONEncodeError:
        return _JSON_FALLBACK.encode(body)

# One answer for unknown, expired and other users' queries: it must not tell them apart.
NOT_FOUND_MESSAGE = "Query not found (it finished, was cancelled, or the URI is wrong)"


def protocol_error_response(error: ProtocolError) -> Response:
    body = {"error": {"message": error.message, "errorCode": error.error.code, "errorName": error.error.name,
                      "errorType": error.error.type}, "message": error.message}
    return JSONResponse(body, status_code=error.status)


class TrinoFrontend:
    def __init__(self, *, pipeline: Pipeline, settings: Settings, metrics: Metrics, registry: QueryRegistry,
                 is_draining: Any) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.protocol = settings.protocol
        self.metrics = metrics
        self.registry = registry
        self._is_draining = is_draining
        self.started = time.monotonic()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/statement", self.post_statement, methods=["POST"]),
            Route("/v1/statement", self.head_statement, methods=["HEAD"]),
            Route("/v1/statement/executing/{query_id}/{slug}/{token:int}", self.get_page, methods=["GET"]),
            Route("/v1/statement/executing/{query_id}/{slug}/{token:int}", self.cancel, methods=["DELETE"]),
            Route("/v1/info", self.info, methods=["GET"]),
            Route("/v1/info/state", self.info_state, methods=["GET"]),
            Route("/v1/status", self.status, methods=["GET"]),
            Route("/v1/node", self.nodes, methods=["GET"]),
            Route("/v1/query/{query_id}", self.query_info, methods=["GET"]),
            Route("/v1/query/{query_id}", self.kill, methods=["DELETE"]),
        ]

    # -- endpoints -----------------------------------------------------------------------------------------

    async def post_statement(self, request: Request) -> Response:
        sql: str | None = None
        try:
            if self._is_draining():
                raise ProtocolError(503, "The gateway is shutting down; retry on another replica",
                                    error_name="SERVER_SHUTTING_DOWN")
            principal = await self._authenticate(request)
            sql = await self._read_sql(request)
            client = request.client.host if request.client else None
            session = session_from_headers(request.headers, client_address=client, default_user=principal.user)
        except AuthenticationFailed as failure:
            return self._unauthorized(failure)
        except ProtocolError as error:
            self.metrics.protocol_errors.labels(str(error.status)).inc()
            self._record_refusal(request, error, sql)
            response = protocol_error_response(error)
            if error.status == 503:
                response.headers["Retry-After"] = "1"
            return response
        query = TrinoQuery(self.pipeline.submit(sql, session, principal), settings=self.protocol,
                           metrics=self.metrics)
        await self.registry.add(query)  # before its id reaches the client: any replica finds it
        query.start()
        if not self.protocol.inline_first_page:
            return self._queued(request, query)
        await query.wait(self.protocol.max_wait_seconds)
        return await self._respond(request, query, 0)

    def _queued(self, request: Request, query: TrinoQuery) -> Response:
        """Trino's first answer: accepted, nothing run yet; the rows come from the nextUri polls."""
        body = self._envelope(request, query, state=QueryState.QUEUED.value, next_token=1)
        page = Page(0, _compact(body).encode(), [])
        query.last_page = page
        return Response(page.body, media_type=JSON_TYPE)

    async def get_page(self, request: Request) -> Response:
        query = self._find(request)
        if query is None:
            return self._not_found(request)
        if (refused := await self._refuse_unless_owner(request, query.run.principal.user, query.query_id,
                                                       holds_slug=True)) is not None:
            return refused
        query.last_polled = time.monotonic()
        token = int(request.path_params["token"])
        last = query.last_page
        if last is not None and token == last.token:
            return Response(last.body, media_type=JSON_TYPE, headers=dict(last.headers))
        if last is None or token != last.token + 1 or query.finished_sent:
            return self._not_found(request, f"page {token} of query {query.query_id} is not available")
        await query.wait(self.protocol.max_wait_seconds)
        return await self._respond(request, query, token)

    async def cancel(self, request: Request) -> Response:
        query = self._find(request)
        if query is None:
            return self._not_found(request)
        if (refused := await self._refuse_unless_owner(request, query.run.principal.user, query.query_id,
                                                       holds_slug=True)) is not None:
            return refused
        await query.cancel()
        self.registry.mark_finished(query)
        return Response(status_code=204)

    async def head_statement(self, request: Request) -> Response:
        """JDBC validateConnection: 200 for good (or, in dev mode, no) credentials, 401 for bad ones."""
        if self.pipeline.authenticator.requires_credentials:
            try:
                await self._authenticate(request)
            except AuthenticationFailed as failure:
                return self._unauthorized(failure, body=False)
        return Response(status_code=200)

    async def info(self, request: Request) -> Response:
        return JSONResponse({
            "nodeVersion": {"version": __version__},
            "environment": self.settings.server.environment,
            "coordinator": True,
            "starting": False,
            "uptime": duration_text(time.monotonic() - self.started),
        })

    async def info_state(self, request: Request) -> Response:
        return JSONResponse("SHUTTING_DOWN" if self._is_draining() else "ACTIVE")

    async def status(self, request: Request) -> Response:
        return JSONResponse(status_json(self.pipeline.node, draining=self._is_draining()))

    async def nodes(self, request: Request) -> Response:
        return JSONResponse(node_json(self.pipeline.node))

    async def query_info(self, request: Request) -> Response:
        """QueryInfo of a running or recently ended query, for its owner (or an admin) only."""
        query_id = request.path_params["query_id"]
        viewer = await self._viewer(request)
        if isinstance(viewer, Response):
            return viewer
        summary = self.pipeline.history.get(query_id, viewer)
        if summary is None:
            return self._not_found_for(request, viewer, query_id)
        return JSONResponse(query_info_json(summary, self_uri=str(request.url)))

    async def kill(self, request: Request) -> Response:
        """DELETE /v1/query/{id}: what trino-js-client's cancel and presto-client's kill call."""
        query_id = request.path_params["query_id"]
        viewer = await self._viewer(request)
        if isinstance(viewer, Response):
            return viewer
        query = self.registry.by_id(query_id)
        if query is None or not self.pipeline.history.may_see_owner(viewer, query.run.principal.user):
            return self._not_found_for(request, viewer, query_id)
        await query.cancel()
        self.registry.mark_finished(query)
        return Response(status_code=204)

    # -- helpers -------------------------------------------------------------------------------------------

    async def _viewer(self, request: Request) -> Identity | Response:
        """The authenticated caller of a per-query request, or the 401/429 answer."""
        client = request.client.host if request.client else None
        try:
            return await self.pipeline.authenticate(credentials_from_headers(request.headers, client_address=client))
        except AuthenticationFailed as failure:
            return self._unauthorized(failure)

    async def _refuse_unless_owner(self, request: Request, owner: str, query_id: str, *,
                                   holds_slug: bool) -> Response | None:
        """None when the caller may act on the query; else the answer (401, or 404 as if it did not exist)."""
        if holds_slug and not self.pipeline.authenticator.requires_credentials \
                and request.headers.get("x-trino-user") is None:
            return None  # dev mode, and the caller holds the URI's random slug
        viewer = await self._viewer(request)
        if isinstance(viewer, Response):
            return viewer
        if self.pipeline.history.may_see_owner(viewer, owner):
            return None
        return self._not_found_for(request, viewer, query_id)

    def _not_found_for(self, request: Request, viewer: Identity, query_id: str) -> Response:
        """Unknown, expired and other users' queries get the same answer; the attempt is audited."""
        self.pipeline.record_refused_request(
            client_address=request.client.host if request.client else None, user=viewer.user,
            auth_method=viewer.auth_method, error_name="NOT_FOUND", message=f"Query not found: {query_id[:64]}",
            reason=f"{request.method} {request.url.path[:200]}: not a query of the caller's (HTTP 404)")
        return self._not_found(request)

    async def _authenticate(self, request: Request) -> Identity:
        client = request.client.host if request.client else None
        credentials = credentials_from_headers(request.headers, client_address=client)
        if credentials.session_user is None and not self.pipeline.authenticator.requires_credentials:
            raise ProtocolError(400, "User must be set (X-Trino-User header)")  # dev mode trusts the header
        return await self.pipeline.authenticate(credentials)

    def _record_refusal(self, request: Request, error: ProtocolError, sql: str | None) -> None:
        """A statement refused before it became a query is still an attempt: audited with what is known."""
        self.pipeline.record_refused_request(
            client_address=request.client.host if request.client else None,
            user=request.headers.get("x-trino-user"), source=request.headers.get("x-trino-source"), sql=sql,
            error_name=error.error.name, reason=f"request refused (HTTP {error.status})", message=error.message)

    def _unauthorized(self, failure: AuthenticationFailed, *, body: bool = True) -> Response:
        limited = failure.retry_after is not None
        status = 429 if limited else 401
        self.metrics.protocol_errors.labels(str(status)).inc()
        error = ProtocolError(status, failure.message, error_name="PERMISSION_DENIED")
        response = protocol_error_response(error) if body else Response(status_code=status)
        if limited:
            response.headers["Retry-After"] = str(max(1, math.ceil(failure.retry_after or 1)))
        else:
            for challenge in self.pipeline.authenticator.challenges:
                response.headers.append("WWW-Authenticate", challenge)
        return response

    async def _read_sql(self, request: Request) -> str:
        limit = self.settings.server.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ProtocolError(400, "Invalid Content-Length header")
            if int(declared) > limit:
                raise ProtocolError(413, f"The statement is larger than the limit of {limit} bytes",
                                    error_name="QUERY_TEXT_TOO_LARGE")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limit:
                    raise ProtocolError(413, f"The statement is larger than the limit of {limit} bytes",
                                        error_name="QUERY_TEXT_TOO_LARGE")
        except ClientDisconnect:  # gone, or closed by the body timeout (connection_guard): still an attempt
            raise ProtocolError(408, f"The request body did not arrive completely ({len(body)} bytes came; the "
                                "client disconnected or exceeded server.body_timeout_seconds)") from None
        try:
            sql = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(400, f"The statement is not valid UTF-8 (byte {error.start})") from None
        if not sql.strip():
            raise ProtocolError(400, "SQL statement is empty")
        return sql

    def _find(self, request: Request) -> TrinoQuery | None:
        return self.registry.get(request.path_params["query_id"], request.path_params["slug"])

    def _not_found(self, request: Request, message: str | None = None) -> Response:
        self.metrics.protocol_errors.labels("404").inc()
        text = message or NOT_FOUND_MESSAGE
        return protocol_error_response(ProtocolError(404, text, error_name="NOT_FOUND"))

    async def _respond(self, request: Request, query: TrinoQuery, token: int) -> Response:
        try:
            page = self._page(request, query, token)
        except Exception:  # a bug in page building must not become a 500 with a stack trace
            log.exception("building page %s of %s failed", token, query.query_id)
            error = InternalError("internal error while building the response")
            await query.cancel(error)  # the query ends here too: its slot freed, its one audit record written
            body = self._envelope(request, query, state=QueryState.FAILED.value, error=error)
            page = Page(token, json.dumps(body).encode(), [])
            query.finished_sent = True
        query.last_page = page
        if query.finished_sent:
            self.registry.mark_finished(query)
        return Response(page.body, media_type=JSON_TYPE, headers=dict(page.headers))

    def _page(self, request: Request, query: TrinoQuery, token: int) -> Page:
        run = query.run
        if run.error is not None:
            query.finished_sent = True
            body = self._envelope(request, query, state=QueryState.FAILED.value, error=run.error)
            return Page(token, json.dumps(body).encode(), [])
        pieces, rows = query.take()
        finished = query.exhausted
        state = QueryState.FINISHED.value if finished else run.state.value
        body = self._envelope(request, query, state=state, next_token=None if finished else token + 1)
        headers = change_headers(run.change) if finished and run.change is not None else []
        if finished:
            query.finished_sent = True
        text = _compact(body)
        if pieces:
            text = f'{text[:-1]},"data":[{",".join(pieces)}]}}'
            query.rows_sent += rows
            self.metrics.result_rows.inc(rows)
        self.metrics.result_pages.inc()
        return Page(token, text.encode(), headers)

    def _envelope(self, request: Request, query: TrinoQuery, *, state: str, next_token: int | None = None,
                  error: GatewayError | None = None) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        run = query.run
        body: dict[str, Any] = {"id": run.query_id, "infoUri": f"{base}/v1/query/{run.query_id}"}
        if next_token is not None:
            body["nextUri"] = f"{base}/v1/statement/executing/{run.query_id}/{query.slug}/{next_token}"
        if run.trino_columns is not None and error is None:
            body["columns"] = [column_json(c.name, c.type) for c in run.trino_columns]
        body["stats"] = self._stats(query, state=state)
        body["warnings"] = []
        if error is not None:
            body["error"] = error_json(error)
        if run.update_type is not None:
            body["updateType"] = run.update_type
        return body

    def _stats(self, query: TrinoQuery, *, state: str | None = None) -> dict[str, Any]:
        run = query.run
        stats = run.stats
        elapsed = int(run.elapsed_seconds * 1000)
        state = state or run.state.value
        return {
            "state": state,
            "queued": state == QueryState.QUEUED.value,
            "scheduled": state != QueryState.QUEUED.value,
            "nodes": 1,
            "totalSplits": 1,
            "queuedSplits": 0,
            "runningSplits": 0 if run.done else 1,
            "completedSplits": 1 if run.done else 0,
            "cpuTimeMillis": int(stats.cpu_seconds * 1000),
            "wallTimeMillis": int(stats.elapsed_seconds * 1000),
            "queuedTimeMillis": int(run.queued_seconds * 1000),
            "elapsedTimeMillis": elapsed,
            "processedRows": stats.rows,
            "processedBytes": stats.bytes,
            "physicalInputBytes": stats.bytes,
            "peakMemoryBytes": int(stats.extra.get("peak_memory_bytes", 0)),  # what a Trino backend reports
            "spilledBytes": 0,
        }


