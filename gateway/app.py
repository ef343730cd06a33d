"""Wiring: settings -> backends, catalog, pipeline, frontends -> one starlette application.

`Gateway` owns everything with a lifetime (backends, the catalog refresh task, the query registry) and
starts and stops it in order; `Gateway.asgi()` is the application uvicorn serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from gateway import __version__
from gateway.access import Access, OperatorGroups, no_grants
from gateway.audit.record import format_time
from gateway.audit.setup import AUDIT_CATALOG, build_trail
from gateway.audit.stores import StoreUnavailable
from gateway.backends.base import Backend
from gateway.backends.factory import build_backend
from gateway.cache.stage import CacheStage
from gateway.cache.store import ResultCache
from gateway.config import Settings
from gateway.console.routes import console_routes
from gateway.cost.alerts import AlertSink
from gateway.cost.budgets import Budgets, period_bounds
from gateway.cost.meter import Meter
from gateway.cost.model import Charge
from gateway.cost.shared import ClusterAlerts, SharedSpend
from gateway.cost.store import CostStore
from gateway.errors import GatewayError
from gateway.frontends.access_api import AccessApi
from gateway.frontends.api import AuditApi
from gateway.frontends.cache_api import CacheApi
from gateway.frontends.chargeback_api import ChargebackApi
from gateway.frontends.forwarding import ForwardingMiddleware
from gateway.frontends.ops import OpsEndpoints
from gateway.frontends.pgwire import PgWireFrontend
from gateway.frontends.queries_api import QueriesApi
from gateway.frontends.trino_http import TrinoFrontend
from gateway.frontends.trino_queries import QueryRegistry
from gateway.grants.notices import RedisNotices
from gateway.grants.service import AccessRequests
from gateway.grants.snapshot import GrantSnapshot
from gateway.identity import Authenticator, Identity
from gateway.identity.setup import build_authenticator as build_identity
from gateway.lineage.emitter import LineageEmitter, build_transport
from gateway.lineage.naming import DatasetNames
from gateway.mask_key import load_mask_key
from gateway.metadata import CatalogService
from gateway.metrics import Metrics
from gateway.node import NodeInfo
from gateway.pipeline import Pipeline
from gateway.planner import Planner
from gateway.policy.load import load_dev_users
from gateway.policy.store import PolicyStore
from gateway.policy_changes.canary_run import SOURCE as CANARY_FRONTEND
from gateway.policy_changes.canary_run import CanaryRunner
from gateway.policy_changes.guard import PolicyCanaries
from gateway.query_history import QueryHistory
from gateway.query_outcome import QueryOutcome
from gateway.replicas import ReplicaDirectory, reachable_url
from gateway.sql.limits import StatementLimits
from gateway.workload.budget import BudgetHook
from gateway.workload.manager import WorkloadManager
from gateway.workload.redis_slots import RedisSlots
from gateway.workload.slots import LocalSlots, SlotPool
from gateway.workload.store import WorkloadStore

log = logging.getLogger("gateway")


def build_dev_users(settings: Settings) -> dict[str, Identity]:
    path = settings.identity.dev_users_file or settings.policies.dir / "dev_users.yaml"
    if settings.identity.dev_users_file is None and not path.exists():
        return {}
    return load_dev_users(path)


def build_authenticator(settings: Settings, metrics: Metrics) -> Authenticator:
    dev_users = build_dev_users(settings) if settings.identity.mode == "dev" else None
    return build_identity(settings.identity, dev_users=dev_users,
                          on_jwks_fetch=lambda outcome: metrics.jwks_fetches.labels(outcome).inc())


def build_access(settings: Settings, policies: PolicyStore, grants: GrantSnapshot | None = None) -> Access:
    access_requests = settings.access_requests
    return Access(policy=lambda: policies.current,
                  groups=OperatorGroups.of(workload=settings.workload.admin_groups, cache=settings.cache.admin_groups,
                                           finance=settings.cost.finance_groups,
                                           access_admin=access_requests.admin_groups,
                                           access_auditor=access_requests.auditor_groups),
                  grants=grants.active_for if grants is not None else no_grants)


def build_workload(settings: Settings, metrics: Metrics, access: Access,
                   budget: BudgetHook | None = None) -> WorkloadManager:
    """Resource groups from the policies directory; slots counted per process, or in Redis when configured."""
    store = WorkloadStore(settings.policies.dir, metrics)
    store.load()  # invalid workload.yaml: the gateway does not start (PolicyError, file:line)
    config = settings.workload
    slots: SlotPool = LocalSlots()
    if config.redis is not None:
        slots = RedisSlots(url=config.redis, prefix=config.key_prefix, replica=uuid.uuid4().hex[:12],
                           lease_seconds=config.lease_seconds, poll_seconds=config.poll_seconds,
                           retry_seconds=config.retry_seconds, timeout_seconds=config.redis_timeout_seconds,
                           metrics=metrics)
    return WorkloadManager(store=store, slots=slots, metrics=metrics, access=access,
                           budget=budget)


def build_cache(settings: Settings, metrics: Metrics) -> ResultCache | None:
    cache = settings.cache
    if not cache.enabled:
        return None
    return ResultCache(max_bytes=cache.max_bytes, max_entry_bytes=cache.max_entry_bytes, metrics=metrics,
                       redis_url=cache.redis, prefix=cache.redis_prefix)


def build_lineage(settings: Settings, metrics: Metrics, catalog: CatalogService,
                  meter: Meter | None) -> LineageEmitter | None:
    lineage = settings.lineage
    if not lineage.enabled:
        return None
    server = settings.server
    gateway_namespace = f"trino://{server.host}:{server.port}"  # the gateway is a Trino endpoint itself
    return LineageEmitter(settings=lineage, transport=build_transport(lineage),
                          names=DatasetNames(settings.backends, gateway_namespace=gateway_namespace),
                          gateway_namespace=gateway_namespace, snapshot=lambda: catalog.current.snapshot,
                          default_catalog=settings.default_catalog, version=__version__, metrics=metrics,
                          cost_center_of=meter.cost_center_of if meter is not None else lambda i: i.cost_center)


def build_directory(settings: Settings, pipeline: Pipeline, registry: QueryRegistry,
                    metrics: Metrics) -> ReplicaDirectory | None:
    """With Redis, replicas find each other's queries (any replica answers any poll); else None."""
    workload = settings.workload
    if workload.redis is None:
        return None
    server = settings.server
    internal = server.internal_url or reachable_url("https" if server.tls_cert else "http", server.host, server.port)
    return ReplicaDirectory(url=workload.redis, prefix=workload.key_prefix, node_id=pipeline.node.node_id,
                            internal_url=internal, ttl_seconds=server.replica_ttl_seconds,
                            timeout_seconds=workload.redis_timeout_seconds,
                            held=lambda: {*registry.ids(), *pipeline.history.ids()}, metrics=metrics)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.metrics.info.info({"version": __version__})
        self.backends = {b.name: build_backend(b, metrics=self.metrics) for b in settings.backends}
        for name, backend in self.backends.items():
            self.metrics.backend_busy_threads.labels(name).set_function(partial(_busy_threads, backend))
            for per_backend in (self.metrics.backend_running, self.metrics.backend_duration,
                                self.metrics.backend_cancellations):
                per_backend.labels(name)  # exposed as 0 from the start
        self.audit = build_trail(settings.audit, self.metrics)
        self.audit_backend = self.audit.store.backend(AUDIT_CATALOG)  # auditors' SQL: gateway.audit.*
        catalogs = {**self.backends, AUDIT_CATALOG: self.audit_backend}
        self.catalog = CatalogService(catalogs, self.metrics,
                                      postgres_catalog=settings.server.pgwire_port is not None)
        self.policies = PolicyStore(settings.policies.dir, self.metrics)
        self.policies.load()  # invalid policies: the gateway does not start (PolicyError, file:line)
        self.costs = CostStore(settings.policies.dir, self.metrics)
        self.costs.load()  # invalid cost.yaml: the gateway does not start (PolicyError, file:line)
        cost = settings.cost
        self.alerts = AlertSink(metrics=self.metrics, webhook_url=cost.webhook_url,
                                timeout_seconds=cost.webhook_timeout_seconds, max_attempts=cost.webhook_attempts,
                                backoff_seconds=cost.webhook_backoff_seconds)
        self.budgets = Budgets(costs=lambda: self.costs.current, alerts=self.alerts, metrics=self.metrics)
        self.shared_spend: SharedSpend | None = None
        if cost.enabled and cost.redis is not None:
            self.shared_spend = SharedSpend(redis_url=cost.redis, prefix=cost.redis_prefix, budgets=self.budgets,
                                            costs=lambda: self.costs.current, metrics=self.metrics,
                                            sync_seconds=cost.sync_seconds)
            self.budgets.alerts = ClusterAlerts(self.alerts, self.shared_spend.redis, cost.redis_prefix,
                                                self.metrics)
        self.grants = GrantSnapshot()
        self.access = build_access(settings, self.policies,
                                   self.grants if settings.access_requests.enabled else None)
        self.access_requests = AccessRequests(store=self.audit.store, access=self.access, snapshot=self.grants,
                                              catalog=lambda: self.catalog.current.snapshot,
                                              default_catalog=settings.default_catalog,
                                              settings=settings.access_requests, metrics=self.metrics,
                                              notices=RedisNotices(url=settings.workload.redis,
                                                                   channel=settings.workload.key_prefix + "access")
                                              if settings.workload.redis is not None else None)
        self.workload = build_workload(settings, self.metrics, self.access, self.budgets if cost.enabled else None)
        meter = None
        if cost.enabled:
            types = {b.name: b.type for b in settings.backends} | {AUDIT_CATALOG: self.audit_backend.dialect}
            meter = Meter(costs=lambda: self.costs.current, tables=lambda: self.policies.current,
                          backend_types=types, on_charge=self._charged)
        self.mask_key = load_mask_key(key_env=settings.masking.key_env, key_file=settings.masking.key_file)
        limits = settings.limits
        planner = Planner(backends=catalogs,
                          default_catalog=settings.default_catalog, version=__version__, metrics=self.metrics,
                          mask_key=self.mask_key,
                          limits=StatementLimits(max_bytes=limits.max_statement_bytes,
                                                 max_tokens=limits.max_statement_tokens,
                                                 max_depth=limits.max_nesting_depth,
                                                 max_boolean_terms=limits.max_boolean_terms),
                          failed_cache_size=limits.failed_plan_cache_entries)
        self.cache = build_cache(settings, self.metrics)
        self.lineage = build_lineage(settings, self.metrics, self.catalog, meter)
        self.pipeline = Pipeline(authenticator=build_authenticator(settings, self.metrics), catalog=self.catalog,
                                 policies=self.policies, planner=planner, backends=catalogs,
                                 metrics=self.metrics, audit=self.audit, workload=self.workload,
                                 cache=CacheStage(self.cache, default_ttl=settings.cache.ttl_seconds,
                                                  live_catalogs=frozenset({AUDIT_CATALOG}),
                                                  stall_seconds=settings.cache.coalesce_stall_seconds), meter=meter,
                                 planning_threads=limits.planning_threads, max_result_bytes=limits.max_result_bytes,
                                 lineage=None if self.lineage is None else partial(_not_canaries, self.lineage.record),
                                 history=QueryHistory(max_entries=settings.protocol.query_history_max,
                                                      keep_seconds=settings.protocol.query_history_seconds,
                                                      access=self.access),
                                 node=NodeInfo(version=__version__, environment=settings.server.environment,
                                               uri=f"{'https' if settings.server.tls_cert else 'http'}://"
                                                   f"{settings.server.host}:{settings.server.port}"))
        policies = settings.policies
        self.canaries = PolicyCanaries(  # invalid canaries.yaml: the gateway does not start (PolicyError)
            store=self.policies, interval_seconds=policies.canary_interval_seconds,
            runner=CanaryRunner(pipeline=self.pipeline, metrics=self.metrics, default_catalog=settings.default_catalog,
                                default_schema=settings.backends[0].schema,
                                has_schema=lambda c, s: self.catalog.current.snapshot.has_schema(c, s),
                                timeout_seconds=policies.canary_timeout_seconds,
                                max_fetch_rows=policies.canary_max_rows))
        self.registry = QueryRegistry(settings.protocol, self.metrics)
        self.directory = build_directory(settings, self.pipeline, self.registry, self.metrics)
        if self.directory is not None:
            self.registry.announce = self.directory.announce
        self.draining = False
        self._tasks: list[asyncio.Task[None]] = []
        self.pgwire = PgWireFrontend(pipeline=self.pipeline, settings=settings, metrics=self.metrics,
                                     is_draining=self.is_draining) if settings.server.pgwire_port is not None else None

    def _charged(self, charge: Charge) -> None:
        self.budgets.add(charge)
        if self.shared_spend is not None:
            self.shared_spend.record(charge)

    def is_draining(self) -> bool:
        return self.draining

    async def start(self) -> None:
        await self.audit.start()  # first: every attempt from now on has somewhere to go
        seeded = await self._seed_budgets()
        await self.budgets.alerts.start()
        if self.shared_spend is not None:
            await self.shared_spend.start(seeded)
        await self.pipeline.authenticator.start()
        for backend in self.backends.values():
            await backend.start()
        await self.audit_backend.start()
        await self.catalog.refresh()
        if self.settings.access_requests.enabled:
            await self.access_requests.start()  # before the first query: grants in force are honoured at once
        await self.workload.slots.start()
        if self.directory is not None:
            await self.directory.start()
        if self.cache is not None:
            await self.cache.start()
        self.registry.start_reaper()
        if self.lineage is not None:
            self.lineage.start()
        await self.canaries.check_current("start")  # failing: the gateway serves but is not ready
        self._tasks = [asyncio.create_task(self._refresh_catalog_forever(), name="catalog-refresh"),
                       asyncio.create_task(self._reload_policies_forever(), name="policy-reload"),
                       asyncio.create_task(self.canaries.run_forever(), name="policy-canaries")]
        if self.pgwire is not None:
            await self.pgwire.start()  # last: its clients find everything running

    async def _seed_budgets(self) -> dict[tuple[str, str], float]:
        """This period's spend per cost center from the ledger, so budgets hold across restarts; the
        (cost center, period key) totals it seeded."""
        if not self.settings.cost.enabled or not self.costs.current.budgets:
            return {}
        now = self.budgets.now()
        try:
            daily = await self.audit.store.spend(format_time(period_bounds("daily", now)[0]))
            monthly = await self.audit.store.spend(format_time(period_bounds("monthly", now)[0]))
        except StoreUnavailable as error:
            log.error("budget counters start at 0: the ledger is unavailable (%s)", error)
            return {}
        self.budgets.seed(daily=daily, monthly=monthly)
        return {**{(center, period_bounds("daily", now)[2]): total for center, total in daily.items()},
                **{(center, period_bounds("monthly", now)[2]): total for center, total in monthly.items()}}

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
            await self.canaries.reload_if_changed()  # the table policies: installed only if the canaries pass
            self.workload.store.reload_if_changed()
            self.costs.reload_if_changed()

    async def drain(self, grace_seconds: float) -> None:
        """Stop taking new queries; let running ones finish for up to `grace_seconds`, then cancel them while
        the listener is still open, so each polling client receives its cancellation (and each is audited
        now), waiting up to `server.shutdown_delivery_seconds` for those final pages to be fetched."""
        self.draining = True
        deadline = time.monotonic() + grace_seconds
        while (self.registry.in_flight() or self._pgwire_running()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.pgwire is not None and self.pgwire.running():
            await self.pgwire.cancel_running(GatewayError(
                f"The gateway is shutting down: the statement was cancelled after the {grace_seconds:g} s grace "
                f"period; run it again (on another replica)", error_name="SERVER_SHUTTING_DOWN"))
        remaining = self.registry.in_flight()
        if not remaining:
            return
        log.warning("cancelling %d queries still running after the %.0fs grace period", len(remaining),
                    grace_seconds)
        for query in remaining:
            await query.cancel(GatewayError(
                f"The gateway is shutting down: query {query.query_id} was cancelled after the "
                f"{grace_seconds:g} s grace period; run it again (on another replica)",
                error_name="SERVER_SHUTTING_DOWN"))
        deadline = time.monotonic() + self.settings.server.shutdown_delivery_seconds
        while any(not q.finished_sent for q in remaining) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        undelivered = sum(1 for q in remaining if not q.finished_sent)
        if undelivered:
            log.warning("%d cancelled queries were not polled within %.0fs; their clients see the connection "
                        "close", undelivered, self.settings.server.shutdown_delivery_seconds)

    def _pgwire_running(self) -> bool:
        return self.pgwire is not None and bool(self.pgwire.running())

    async def stop(self) -> None:
        if self.pgwire is not None:
            await self.pgwire.stop()  # first: no statement starts while the stages below close
        for task in self._tasks:
            task.cancel()
        await self.registry.close(GatewayError("The gateway is shutting down", error_name="SERVER_SHUTTING_DOWN"))
        await self.access_requests.stop()
        if self.directory is not None:
            await self.directory.close()
        await self.workload.slots.close()
        if self.cache is not None:
            await self.cache.close()
        for backend in self.backends.values():
            await backend.close()
        await self.pipeline.authenticator.close()
        self.pipeline.close()
        await self.audit_backend.close()
        if self.shared_spend is not None:
            await self.shared_spend.close()
        await self.budgets.alerts.stop()
        if self.lineage is not None:  # after the registry closed: the cancelled queries' runs are sent too
            await asyncio.to_thread(self.lineage.stop, self.settings.lineage.timeout_seconds)
        self.catalog.close()
        await self.audit.stop()  # last: the records of the queries cancelled above are flushed

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def asgi(self) -> ASGIApp:
        trino = TrinoFrontend(pipeline=self.pipeline, settings=self.settings, metrics=self.metrics,
                              registry=self.registry, is_draining=self.is_draining)
        ops = OpsEndpoints(metrics=self.metrics, backends=self.backends, is_draining=self.is_draining,
                           audit_status=self.audit.status, canary_status=self.canaries.status)
        api = AuditApi(pipeline=self.pipeline, store=self.audit.store)
        queries = QueriesApi(pipeline=self.pipeline)
        cache = CacheApi(pipeline=self.pipeline, cache=self.cache)
        chargeback = ChargebackApi(pipeline=self.pipeline, store=self.audit.store)
        access = AccessApi(pipeline=self.pipeline, requests=self.access_requests) \
            if self.settings.access_requests.enabled else None
        console = console_routes(pipeline=self.pipeline, store=self.audit.store, settings=self.settings,
                                 metrics=self.metrics)
        app = Starlette(routes=[*trino.routes(), *ops.routes(), *api.routes(), *queries.routes(), *cache.routes(),
                                *chargeback.routes(), *(access.routes() if access is not None else ()), *console],
                        lifespan=self.lifespan,
                        exception_handlers={Exception: _internal_error, 404: _not_found, 405: _not_allowed})
        if access is not None:  # the console's way in (gateway.grants.service); absent: "not enabled"
            app.state.access_requests = self.access_requests
        if self.directory is None:
            return app
        return ForwardingMiddleware(app, directory=self.directory, holds=self.holds,
                                    timeout_seconds=self.settings.server.forward_timeout_seconds,
                                    metrics=self.metrics)

    def holds(self, query_id: str) -> bool:
        """Whether this process answers the query's polls itself."""
        return self.registry.by_id(query_id) is not None or self.pipeline.history.holds(query_id)


def _not_canaries(record: Callable[[QueryOutcome], None], outcome: QueryOutcome) -> None:
    """Lineage describes what consumers read: the policy canaries' synthetic probes are audited, not lineage."""
    if outcome.session.frontend != CANARY_FRONTEND:
        record(outcome)


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
