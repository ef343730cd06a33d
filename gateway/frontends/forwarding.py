"""Any replica answers any poll: per-query requests for a query another replica holds are forwarded to it.

    GET|DELETE /v1/statement/executing/{id}/...    nextUri polls and cancels
    GET|DELETE /v1/query/{id}                      QueryInfo and kills

An ASGI layer in front of the application, so the protocol code is unchanged: a request for a query this
process does not hold is looked up in the replica directory (`gateway.replicas`) and sent, headers and all
(credentials included: the holder checks who may see the query, exactly as for a request it received itself),
to the holder's internal URL, and its answer is streamed back. The Host header travels unchanged, so every
URI in the answer (nextUri, infoUri) names the address the client used (the balancer), never the internal
one. A forwarded request carries `X-Gateway-Forwarded-By`; a request carrying it is never forwarded again
(at most one hop).

A query whose holder is gone (its registration expired, or it does not answer) fails with a Trino error
saying so; a poll while Redis does not answer gets 503 with Retry-After (Trino clients retry those).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.frontends.trino_query_info import error_json
from gateway.metrics import Metrics
from gateway.replicas import DirectoryUnavailable, ReplicaDirectory

log = logging.getLogger("gateway.replicas")

FORWARDED_BY = "x-gateway-forwarded-by"
MAX_CONNECTIONS = 256  # open connections to other replicas, per process
_PER_QUERY = re.compile(r"^/v1/(?:statement/executing|query)/([A-Za-z0-9_]{1,128})(?:/|$)")
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                         b"trailer", b"transfer-encoding", b"upgrade", b"content-length"})


def per_query_id(path: str) -> str | None:
    match = _PER_QUERY.match(path)
    return match.group(1) if match else None


def holder_gone(query_id: str) -> GatewayError:
    return GatewayError(f"Query {query_id} was running on a gateway replica that is no longer available; "
                        f"run it again", error_name="GENERIC_INTERNAL_ERROR")


class ForwardingMiddleware:
    def __init__(self, app: ASGIApp, *, directory: ReplicaDirectory, holds: Callable[[str], bool],
                 timeout_seconds: float, metrics: Metrics) -> None:
        self.app = app
        self.directory = directory
        self.holds = holds
        self.metrics = metrics
        self._http = httpx.AsyncClient(timeout=timeout_seconds, limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
                                       follow_redirects=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        query_id = per_query_id(scope["path"]) if scope["type"] == "http" else None
        if (query_id is None or scope["method"] not in ("GET", "DELETE") or self.holds(query_id)
                or any(name == FORWARDED_BY.encode() for name, _ in scope["headers"])):
            await self.app(scope, receive, send)
            return
        try:
            holder = await self.directory.holder(query_id)
        except DirectoryUnavailable:
            self.metrics.forwarded_requests.labels("failed").inc()
            await _json(send, 503, _protocol_error("The replica directory (Redis) does not answer; retry",
                                                   "GENERIC_INTERNAL_ERROR"), retry_after=True)
            return
        if holder is None or holder.node_id == self.directory.node_id:
            self.metrics.forwarded_requests.labels("unknown").inc()
            await self.app(scope, receive, send)  # answered here: not found, as for any unknown query
            return
        if holder.url is None:
            await self._gone(scope, send, query_id)
            return
        await self._forward(scope, send, holder.url, query_id)

    async def _forward(self, scope: Scope, send: Send, base: str, query_id: str) -> None:
        target = base.rstrip("/") + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        client = scope.get("client")
        forwarded_for = dict(headers).get(b"x-forwarded-for")
        if client:
            address = client[0].encode()
            forwarded_for = forwarded_for + b", " + address if forwarded_for else address
            headers = [(k, v) for k, v in headers if k != b"x-forwarded-for"] + [(b"x-forwarded-for", forwarded_for)]
        if b"x-forwarded-proto" not in dict(headers):
            headers.append((b"x-forwarded-proto", scope["scheme"].encode()))
        headers.append((FORWARDED_BY.encode(), self.directory.node_id.encode()))
        began = time.monotonic()
        try:
            request = self._http.build_request(scope["method"], target, headers=headers)
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException:
            self.metrics.forwarded_requests.labels("failed").inc()
            await _json(send, 504, _protocol_error(f"The gateway replica holding query {query_id} did not answer "
                                                   f"in time", "GENERIC_INTERNAL_ERROR"))
            return
        except httpx.HTTPError as error:
            log.warning("forwarding %s %s to %s failed: %s", scope["method"], scope["path"][:200], base, error)
            await self._gone(scope, send, query_id)
            return
        self.metrics.forward_duration.observe(time.monotonic() - began)
        self.metrics.forwarded_requests.labels("forwarded").inc()
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP]})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as error:  # the holder went away mid-answer: the client sees the connection end
            log.warning("forwarded answer from %s broke off: %s", base, error)
        finally:
            await response.aclose()

    async def _gone(self, scope: Scope, send: Send, query_id: str) -> None:
        self.metrics.forwarded_requests.labels("holder_gone").inc()
        error = holder_gone(query_id)
        if scope["method"] == "DELETE":  # nothing is left to cancel
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"].startswith("/v1/statement/"):  # a poll: the query fails, as Trino reports it
            await _json(send, 200, {"id": query_id, "stats": _failed_stats(), "warnings": [],
                                    "error": error_json(error)})
        else:
            await _json(send, 502, _protocol_error(error.message, error.error.name))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def closing_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self._http.aclose()
            await send(message)

        await self.app(scope, receive, closing_send)


def _failed_stats() -> dict[str, object]:
    return {"state": "FAILED", "queued": False, "scheduled": True, "nodes": 0, "totalSplits": 0, "queuedSplits": 0,
            "runningSplits": 0, "completedSplits": 0, "cpuTimeMillis": 0, "wallTimeMillis": 0,
            "queuedTimeMillis": 0, "elapsedTimeMillis": 0, "processedRows": 0, "processedBytes": 0,
            "physicalInputBytes": 0, "peakMemoryBytes": 0, "spilledBytes": 0}


def _protocol_error(message: str, name: str) -> dict[str, object]:
    error = GatewayError(message, error_name=name)
    return {"error": {"message": message, "errorCode": error.error.code, "errorName": name,
                      "errorType": error.error.type}, "message": message}


async def _json(send: Send, status: int, body: dict[str, object], *, retry_after: bool = False) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
