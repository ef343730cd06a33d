"""Operations endpoints: Prometheus metrics and health probes.

    GET /metrics         Prometheus
    GET /health/live     the process serves HTTP
    GET /health/ready    200 when every backend answers and the policy canaries of the version in force pass;
                         503 while draining, when a backend does not answer, or when a canary fails
    GET /health/audit    the audit trail: store up, why it was last seen down, spool, quarantined records
                         (200 while records reach the store, else 503); never record contents
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.metrics import Metrics

READY_TIMEOUT_SECONDS = 5.0


class Dependency(Protocol):
    """Anything readiness depends on (each backend is one): raises `GatewayError` while it cannot serve."""

    async def ping(self) -> None: ...


class OpsEndpoints:
    def __init__(self, *, metrics: Metrics, backends: Mapping[str, Dependency], is_draining: Callable[[], bool],
                 audit_status: Callable[[], dict[str, Any]],
                 canary_status: Callable[[], tuple[bool, dict[str, Any]]] | None = None) -> None:
        self.metrics = metrics
        self.backends = backends
        self.is_draining = is_draining
        self.audit_status = audit_status
        self.canary_status = canary_status

    def routes(self) -> list[Route]:
        return [
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.ready, methods=["GET"]),
            Route("/health/audit", self.audit, methods=["GET"]),
        ]

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def audit(self, request: Request) -> Response:
        status = self.audit_status()
        healthy = status["store_up"] and status["journal_ok"]
        return JSONResponse(status, status_code=200 if healthy else 503)

    async def ready(self, request: Request) -> Response:
        if self.is_draining():
            return JSONResponse({"status": "draining"}, status_code=503)
        problems = {}
        for name, backend in self.backends.items():
            try:
                await asyncio.wait_for(backend.ping(), timeout=READY_TIMEOUT_SECONDS)
                self.metrics.backend_up.labels(name).set(1)
            except (GatewayError, TimeoutError) as error:
                self.metrics.backend_up.labels(name).set(0)
                problems[name] = getattr(error, "message", None) or "no answer in time"
        canaries_pass, canaries = self.canary_status() if self.canary_status is not None else (True, None)
        if problems:
            return JSONResponse({"status": "unavailable", "backends": problems,
                                 **({"canaries": canaries} if canaries is not None else {})}, status_code=503)
        if not canaries_pass:
            return JSONResponse({"status": "unavailable", "backends": sorted(self.backends), "canaries": canaries},
                                status_code=503)
        return JSONResponse({"status": "ready", "backends": sorted(self.backends),
                             **({"canaries": canaries} if canaries is not None else {})})
