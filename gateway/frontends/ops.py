"""Operations endpoints: Prometheus metrics and health probes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.backends.base import Backend
from gateway.errors import GatewayError
from gateway.metrics import Metrics

READY_TIMEOUT_SECONDS = 5.0


class OpsEndpoints:
    def __init__(self, *, metrics: Metrics, backends: dict[str, Backend], is_draining: Callable[[], bool]) -> None:
        self.metrics = metrics
        self.backends = backends
        self.is_draining = is_draining

    def routes(self) -> list[Route]:
        return [
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.ready, methods=["GET"]),
        ]

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

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
        if problems:
            return JSONResponse({"status": "unavailable", "backends": problems}, status_code=503)
        return JSONResponse({"status": "ready", "backends": sorted(self.backends)})
