"""The query path, in order. This is the one place that knows the order of the stages:

    identity    who is asking (dev: the session user and the dev users file)   identity.Authenticator
    plan        classify, resolve, authorize + rewrite, generate (no I/O)      planner.Planner
    execute     on the target backend, or the gateway's metadata engine        backends.*
    finish      exactly once per attempt: metrics and one log line             QueryRun._finish

Frontends create a `QueryRun` per statement with `Pipeline.submit`, call `start()`, then `fetch()` rows until
None, or `cancel()`. Protocol details (paging, headers, JSON) stay in the frontend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from enum import StrEnum

from gateway.backends.base import Backend, Column, Execution, ExecutionStats, Row
from gateway.errors import GatewayError, InternalError, PermissionDenied, QueryCanceled
from gateway.identity import Authenticator, Identity
from gateway.metadata import CatalogService
from gateway.metrics import Metrics
from gateway.planner import Plan, Planner, PolicyContext, describe_output_rows
from gateway.policy.store import PolicyStore
from gateway.query_id import QueryIdGenerator
from gateway.session import Session, SessionChange
from gateway.sql.resolve import METADATA_TARGET
from gateway.static_result import StaticExecution

log = logging.getLogger("gateway.query")

INLINE_PLANNING_LIMIT = 16 * 1024  # bytes of SQL


class QueryState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


class Pipeline:
    def __init__(self, *, authenticator: Authenticator, catalog: CatalogService, policies: PolicyStore,
                 planner: Planner, backends: dict[str, Backend], metrics: Metrics) -> None:
        self.authenticator = authenticator
        self.catalog = catalog
        self.policies = policies
        self.planner = planner
        self.backends = backends
        self.metrics = metrics
        self.query_ids = QueryIdGenerator()

    def submit(self, sql: str, session: Session) -> QueryRun:
        return QueryRun(self, self.query_ids.next(), sql, session)

    async def plan(self, sql: str, session: Session, identity: Identity) -> Plan:
        """Planning is CPU work: small statements (nearly all) are planned inline, which is cheaper than a
        thread hop; large ones on a worker thread, so a 1 MB IN list never stalls other clients."""
        snapshot = self.catalog.current.snapshot
        policy = PolicyContext(self.policies.current, self.policies.views)
        if len(sql) <= INLINE_PLANNING_LIMIT:
            return self.planner.plan(sql, session=session, identity=identity, snapshot=snapshot, policy=policy)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.planner.plan(
            sql, session=session, identity=identity, snapshot=snapshot, policy=policy))


class QueryRun:
    """One statement from submission to its end. Never raises from `start`; failures land in `error`."""

    def __init__(self, pipeline: Pipeline, query_id: str, sql: str, session: Session) -> None:
        self.pipeline = pipeline
        self.query_id = query_id
        self.sql = sql
        self.session = session
        self.state = QueryState.QUEUED
        self.identity: Identity | None = None
        self.plan: Plan | None = None
        self.columns: tuple[Column, ...] | None = None
        self.error: GatewayError | None = None
        self.target: str | None = None  # the backend running it, if any (not the metadata engine)
        self.started = time.perf_counter()
        self.finished_at: float | None = None
        self._execution: Execution | None = None
        self._finished = False
        pipeline.metrics.queries_in_flight.inc()

    # -- what frontends read -------------------------------------------------------------------------------

    @property
    def change(self) -> SessionChange | None:
        return self.plan.change if self.plan is not None else None

    @property
    def update_type(self) -> str | None:
        return self.plan.update_type if self.plan is not None else None

    @property
    def stats(self) -> ExecutionStats:
        return self._execution.stats if self._execution is not None else ExecutionStats()

    @property
    def elapsed_seconds(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return end - self.started

    @property
    def done(self) -> bool:
        return self._finished

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        pipeline = self.pipeline
        try:
            self.identity = pipeline.authenticator.authenticate(self.session)
            began = time.perf_counter()
            self.plan = plan = await pipeline.plan(self.sql, self.session, self.identity)
            pipeline.metrics.planning_duration.observe(time.perf_counter() - began)
            self.state = QueryState.RUNNING
            if plan.columns is not None:
                self._execution = StaticExecution(columns=plan.columns, rows=plan.rows)
            elif plan.sql is not None and plan.target is not None:
                execution = await self._execute(plan.target, plan.sql)
                if plan.describe_output:
                    columns, rows = describe_output_rows(execution.columns)
                    await execution.cancel()
                    self._execution = StaticExecution(columns=columns, rows=rows)
            if self._finished:
                return  # cancelled while starting
            if self._execution is not None:
                self.columns = self._execution.columns
            else:
                self._finish(None)
        except GatewayError as error:
            if isinstance(error, PermissionDenied):
                pipeline.metrics.policy_denials.inc()
            self._finish(error)
        except Exception as error:  # a bug: report it as internal, log it with its stack
            log.exception("query %s failed inside the gateway", self.query_id)
            self._finish(InternalError(f"internal error ({type(error).__name__})"))

    async def _execute(self, target: str, sql: str) -> Execution:
        """Start `sql` on `target`. The execution is reachable by `cancel` before it starts running."""
        if target == METADATA_TARGET:
            self._execution = self.pipeline.catalog.current.engine.execution(sql)
        else:
            self._execution = self.pipeline.backends[target].execution(sql)
            self.target = target
            self.pipeline.metrics.backend_running.labels(target).inc()
        await self._execution.start()
        return self._execution

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        """The next rows, or None when there are no more (the run is then finished)."""
        if self._finished or self._execution is None:
            return None
        try:
            rows = await self._execution.fetch(max_rows)
        except GatewayError as error:
            self._finish(error)
            return None
        except Exception as error:
            log.exception("query %s failed while fetching", self.query_id)
            self._finish(InternalError(f"internal error ({type(error).__name__})"))
            return None
        if rows is None:
            self._finish(None)
        return rows

    async def cancel(self, error: GatewayError | None = None) -> None:
        if self._finished:
            return
        execution = self._execution
        self._finish(error or QueryCanceled("Query was canceled"))
        if execution is not None:
            if self.target is not None:
                self.pipeline.metrics.backend_cancellations.labels(self.target).inc()
            await execution.cancel()

    def _finish(self, error: GatewayError | None) -> None:
        if self._finished:
            return
        self._finished = True
        self.finished_at = time.perf_counter()
        self.error = error
        self.state = QueryState.FAILED if error is not None else QueryState.FINISHED
        metrics = self.pipeline.metrics
        kind = self.plan.statement_kind if self.plan is not None else "unplanned"
        outcome = "canceled" if isinstance(error, QueryCanceled) else ("failed" if error else "finished")
        metrics.queries_in_flight.dec()
        metrics.queries.labels(kind, outcome).inc()
        metrics.query_duration.labels(outcome).observe(self.elapsed_seconds)
        if error is not None:
            metrics.query_errors.labels(error.error_name).inc()
        if self.target is not None:
            metrics.backend_running.labels(self.target).dec()
            metrics.backend_duration.labels(self.target).observe(self.stats.elapsed_seconds)
        if log.isEnabledFor(logging.INFO):
            log.info("query", extra={"query": self._log_fields(kind, error)})

    def _log_fields(self, kind: str, error: GatewayError | None) -> dict[str, object]:
        stats = self.stats
        plan = self.plan
        return {
            "query_id": self.query_id,
            "user": self.session.user,
            "groups": sorted(self.identity.groups) if self.identity is not None else None,
            "source": self.session.source,
            "client_address": self.session.client_address,
            "catalog": self.session.catalog,
            "schema": self.session.schema,
            "statement": kind,
            "state": self.state.value,
            "error_name": error.error_name if error else None,
            "error": error.message if error is not None and not isinstance(error, InternalError) else None,
            "elapsed_ms": round(self.elapsed_seconds * 1000, 3),
            "rows": stats.rows,
            "backend": self.target,
            "backend_query_id": stats.backend_query_id,
            "tables": [str(t) for t in plan.tables] if plan is not None else None,
            "rules": list(plan.rules) if plan is not None and plan.rules else None,
            "policy_version": (plan.policy_version or "")[:12] if plan is not None else None,
            "sql": self.sql[:2000],
        }
