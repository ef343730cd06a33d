"""The Trino client protocol over HTTP: what unmodified Trino clients (JDBC, trino-python-client, CLI) need.

    POST   /v1/statement                                      submit; first page (or QUEUED/RUNNING)
    GET    /v1/statement/executing/{id}/{slug}/{token}        next page (long-polls up to max_wait)
    DELETE /v1/statement/executing/{id}/{slug}/{token}        cancel -> 204
    HEAD   /v1/statement                                      connection check (JDBC validateConnection)
    GET    /v1/info, /v1/info/state                           server information
    GET    /v1/query/{id}                                     infoUri: state and stats of one query

Query failures are answered as Trino answers them: HTTP 200 with state FAILED and an `error` object.
Requests that cannot become a query (bad body, bad headers, unknown nextUri) get an HTTP error status and a
JSON body naming the problem. Nothing here knows about policies or backends.

Authentication comes first on POST and HEAD /v1/statement: failures answer 401 with `WWW-Authenticate` (the
accepted schemes) and a JSON error saying what was wrong, or 429 with `Retry-After` while the client address
is slowed after repeated failures. The paging URIs are not re-authenticated: their random slug makes them a
capability only the submitting client holds.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import __version__
from gateway.config import Settings
from gateway.errors import AuthenticationFailed, GatewayError, InternalError, ProtocolError
from gateway.frontends.trino_headers import change_headers, credentials_from_headers, session_from_headers
from gateway.frontends.trino_queries import Page, QueryRegistry, TrinoQuery
from gateway.frontends.trino_values import column_json
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, QueryState

log = logging.getLogger("gateway.trino")

JSON_TYPE = "application/json"


def error_json(error: GatewayError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": error.message if not isinstance(error, InternalError) else "Internal error in the gateway",
        "errorCode": error.error.code,
        "errorName": error.error.name,
        "errorType": error.error.type,
        "failureInfo": {"type": "io.trino.spi.TrinoException", "message": error.message, "suppressed": [],
                        "stack": []},
    }
    if isinstance(error, InternalError):
        body["failureInfo"]["message"] = body["message"]
    if error.line is not None:
        body["errorLocation"] = {"lineNumber": error.line, "columnNumber": error.column or 1}
    return body


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
            Route("/v1/query/{query_id}", self.query_info, methods=["GET"]),
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
        self.registry.add(query)
        query.start()
        await query.wait(self.protocol.max_wait_seconds)
        return self._respond(request, query, 0)

    async def get_page(self, request: Request) -> Response:
        query = self._find(request)
        if query is None:
            return self._not_found(request)
        query.last_polled = time.monotonic()
        token = int(request.path_params["token"])
        last = query.last_page
        if last is not None and token == last.token:
            return Response(last.body, media_type=JSON_TYPE, headers=dict(last.headers))
        if last is None or token != last.token + 1 or query.finished_sent:
            return self._not_found(request, f"page {token} of query {query.query_id} is not available")
        await query.wait(self.protocol.max_wait_seconds)
        return self._respond(request, query, token)

    async def cancel(self, request: Request) -> Response:
        query = self._find(request)
        if query is None:
            return self._not_found(request)
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
            "uptime": _duration(time.monotonic() - self.started),
        })

    async def info_state(self, request: Request) -> Response:
        return JSONResponse("SHUTTING_DOWN" if self._is_draining() else "ACTIVE")

    async def query_info(self, request: Request) -> Response:
        query_id = request.path_params["query_id"]
        for query in self.registry.running():
            if query.query_id == query_id:
                run = query.run
                return JSONResponse({"queryId": run.query_id, "state": run.state.value,
                                     "self": str(request.url), "stats": self._stats(query)})
        return self._not_found(request, f"query {query_id} is not running here")

    # -- helpers -------------------------------------------------------------------------------------------

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
        except ClientDisconnect:  # nobody reads the answer, but the attempt is audited like any refusal
            raise ProtocolError(400, f"The client disconnected after sending {len(body)} bytes of the statement, "
                                     "before its end") from None
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
        text = message or "Query not found (it finished, was cancelled, or the URI is wrong)"
        return protocol_error_response(ProtocolError(404, text, error_name="NOT_FOUND"))

    def _respond(self, request: Request, query: TrinoQuery, token: int) -> Response:
        try:
            page = self._page(request, query, token)
        except Exception:  # a bug in page building must not become a 500 with a stack trace
            log.exception("building page %s of %s failed", token, query.query_id)
            error = InternalError("internal error while building the response")
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
        text = json.dumps(body, separators=(",", ":"))
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
        if run.columns is not None and error is None:
            body["columns"] = [column_json(c.name, c.type) for c in run.columns]
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
            "peakMemoryBytes": 0,
            "spilledBytes": 0,
        }


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        return f"{seconds / 60:.2f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.2f}h"
    return f"{seconds / 86400:.2f}d"

