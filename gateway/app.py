"""Wiring: settings -> backends, catalog, pipeline, frontends -> one starlette application.

`Gateway` owns everything with a lifetime (backends, the catalog refresh task, the query registry) and
starts and stops it in order; `Gateway.asgi()` is the application uvicorn serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from functools import partial

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway import __version__
from gateway.backends.base import Backend
from gateway.backends.duckdb import DuckDBBackend
from gateway.config import BackendSettings, Settings
from gateway.demo import build_demo_database
from gateway.errors import GatewayError
from gateway.frontends.ops import OpsEndpoints
from gateway.frontends.trino_http import TrinoFrontend
from gateway.frontends.trino_queries import QueryRegistry
from gateway.identity import Authenticator
from gateway.metadata import CatalogService
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.planner import Planner
from gateway.policy.load import load_dev_users
from gateway.policy.store import PolicyStore

log = logging.getLogger("gateway")


def build_authenticator(settings: Settings) -> Authenticator:
    path = settings.identity.dev_users_file or settings.policies.dir / "dev_users.yaml"
    if settings.identity.dev_users_file is None and not path.exists():
        return Authenticator()
    return Authenticator(dev_users=load_dev_users(path))


def build_backend(settings: BackendSettings) -> Backend:
    if settings.type == "duckdb":
        assert settings.path is not None  # config validation requires it
        prepare = None
        if settings.tpch_scale is not None:
            prepare = partial(build_demo_database, settings.path, schema=settings.schema, scale=settings.tpch_scale)
        return DuckDBBackend(name=settings.name, path=settings.path, threads=settings.threads, prepare=prepare)
    raise ValueError(f"unknown backend type {settings.type!r}")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.metrics.info.info({"version": __version__})
        self.backends = {b.name: build_backend(b) for b in settings.backends}
        for name, backend in self.backends.items():
            self.metrics.backend_busy_threads.labels(name).set_function(partial(_busy_threads, backend))
        self.catalog = CatalogService(self.backends, self.metrics)
        self.policies = PolicyStore(settings.policies.dir, self.metrics)
        self.policies.load()  # invalid policies: the gateway does not start (PolicyError, file:line)
        planner = Planner(backends=self.backends,
                          default_catalog=settings.default_catalog, version=__version__, metrics=self.metrics)
        self.pipeline = Pipeline(authenticator=build_authenticator(settings), catalog=self.catalog,
                                 policies=self.policies, planner=planner, backends=self.backends,
                                 metrics=self.metrics)
        self.registry = QueryRegistry(settings.protocol, self.metrics)
        self.draining = False
        self._tasks: list[asyncio.Task[None]] = []

    def is_draining(self) -> bool:
        return self.draining

    async def start(self) -> None:
        for backend in self.backends.values():
            await backend.start()
        await self.catalog.refresh()
        self.registry.start_reaper()
        self._tasks = [asyncio.create_task(self._refresh_catalog_forever(), name="catalog-refresh"),
                       asyncio.create_task(self._reload_policies_forever(), name="policy-reload")]

    async def _refresh_catalog_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.metadata.refresh_seconds)
            try:
                await self.catalog.refresh()
            except GatewayError as error:
                log.warning("catalog refresh failed, keeping the previous catalog: %s", error.message)

    async def _reload_policies_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.policies.reload_seconds)
            self.policies.reload_if_changed()

    async def drain(self, grace_seconds: float) -> None:
        """Stop taking new queries; let running ones finish for up to `grace_seconds`, then cancel them."""
        self.draining = True
        deadline = time.monotonic() + grace_seconds
        while self.registry.in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        remaining = len(self.registry.in_flight())
        if remaining:
            log.warning("cancelling %d queries still running after the %.0fs grace period", remaining,
                        grace_seconds)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.registry.close(GatewayError("The gateway is shutting down", error_name="SERVER_SHUTTING_DOWN"))
        for backend in self.backends.values():
            await backend.close()
        self.catalog.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def asgi(self) -> Starlette:
        trino = TrinoFrontend(pipeline=self.pipeline, settings=self.settings, metrics=self.metrics,
                              registry=self.registry, is_draining=self.is_draining)
        ops = OpsEndpoints(metrics=self.metrics, backends=self.backends, is_draining=self.is_draining)
        return Starlette(routes=[*trino.routes(), *ops.routes()], lifespan=self.lifespan,
                         exception_handlers={Exception: _internal_error, 404: _not_found, 405: _not_allowed})


def _busy_threads(backend: Backend) -> float:
    return float(backend.busy_threads)


async def _internal_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled error serving %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"error": {"message": "Internal error in the gateway", "errorName": "GENERIC_INTERNAL_ERROR",
                                   "errorCode": 65536, "errorType": "INTERNAL_ERROR"}}, status_code=500)


async def _not_found(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": {"message": f"No such endpoint: {request.url.path}", "errorName": "NOT_FOUND",
                                   "errorCode": 5, "errorType": "USER_ERROR"}}, status_code=404)


async def _not_allowed(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": {"message": f"{request.method} is not allowed on {request.url.path}",
                                   "errorName": "NOT_SUPPORTED", "errorCode": 13, "errorType": "USER_ERROR"}},
                        status_code=405)
