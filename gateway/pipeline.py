"""The query path, in order. This is the one place that knows the order of the stages:

    identity    who is asking: the frontend authenticates first               Pipeline.authenticate
                (JWT, API key, dev), then the session user is resolved,        Pipeline.session_identity
                impersonation only where policy grants it
    plan        bounds (limits.py), classify, resolve, authorize + rewrite,    planner.Planner
                generate (no I/O); large statements on planning threads
    cache       a cached or coalesced answer (identity-safe key), else the    cache.CacheStage
                lease to run it and keep the result; hits skip admission;
                waiting for an identical query is queueing in its group
    admit       resource group, budget, scan estimate; wait for a slot        workload.WorkloadManager
                (QUEUED meanwhile); time and row caps while it runs            (backend queries only)
    execute     on the target backend, or the gateway's metadata engine        backends.*
    finish      exactly once per attempt: metrics, one log line, one audit     QueryRun._finish
                record (journaled before the frontend sends the final response)
    meter       inside finish: a query that ran on a backend (or was a cache     cost.Meter
                hit, cost 0) is priced; the charge rides with its audit record
                into the ledger and counts against its cost center's budgets
    lineage     inside finish, last: the statement's OpenLineage run is       lineage.LineageEmitter
                queued for a background sender, never waited for

Frontends authenticate the request with `Pipeline.authenticate` (failures never become queries; they are
reported through `Pipeline.record_rejected_attempt`), create a `QueryRun` per statement with
`Pipeline.submit`, call `start()`, then `fetch()` rows until None, or `cancel()`. Protocol details (paging,
headers, JSON) stay in the frontend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import TypeVar

from gateway.audit.attempts import query_record, refused_request_record
from gateway.audit.record import AuditRecord, utc_now
from gateway.audit.trail import AuditTrail
from gateway.backends.base import Backend
from gateway.cache.stage import CacheStage, Lease, from_cache
from gateway.cache.store import CachedResult
from gateway.cost.meter import Meter
from gateway.cost.model import Charge
from gateway.errors import (
    AuthenticationFailed,
    GatewayError,
    InsufficientResources,
    InternalError,
    PermissionDenied,
    QueryCanceled,
)
from gateway.identity import Authenticator, Credentials, Identity
from gateway.logs import auth_failure_log_fields, log_query
from gateway.metadata import CatalogService
from gateway.metadata_live import CursorSetup, cursor_setup, live_rows, reads_live_tables
from gateway.metrics import Metrics
from gateway.node import NodeInfo
from gateway.planner import Plan, Planner, PolicyContext, describe_output_rows
from gateway.policy.store import PolicyStore
from gateway.query_history import QueryHistory
from gateway.query_id import QueryIdGenerator
from gateway.query_outcome import QueryOutcome
from gateway.relations import Column, Execution, ExecutionContext, ExecutionStats, Row
from gateway.session import Session, SessionChange
from gateway.sql.explain_io import COLUMN as IO_PLAN_COLUMN
from gateway.sql.explain_io import IoExplain, from_duckdb_plan
from gateway.sql.resolve import METADATA_TARGET
from gateway.sql.trino_output_types import declared_columns
from gateway.static_result import StaticExecution
from gateway.types import VARCHAR
from gateway.workload.manager import Admission, AdmissionRequest, WorkloadManager
from gateway.workload.model import QUERY_TYPES

T = TypeVar("T")

log = logging.getLogger("gateway.query")
auth_log = logging.getLogger("gateway.auth")

INLINE_PLANNING_LIMIT = 16 * 1024  # bytes of SQL


class QueryState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


class Pipeline:
    def __init__(self, *, authenticator: Authenticator, catalog: CatalogService, policies: PolicyStore,
                 planner: Planner, backends: dict[str, Backend], metrics: Metrics, audit: AuditTrail,
                 workload: WorkloadManager, cache: CacheStage, meter: Meter | None = None,
                 history: QueryHistory | None = None, node: NodeInfo | None = None,
                 planning_threads: int = 2, max_result_bytes: int = 1024**3,
                 lineage: Callable[[QueryOutcome], None] | None = None) -> None:
        self.authenticator = authenticator
        self.lineage = lineage  # told every attempt's outcome once it is audited (gateway.lineage)
        self.history = history or QueryHistory(access=workload.access)
        self.node = node or NodeInfo(version=planner.version, environment="gateway", uri="")
        self.max_result_bytes = max_result_bytes  # per query, unless its resource group sets its own
        self.meter = meter
        self.cache = cache
        self.workload = workload
        self.access = workload.access  # the one door every entry point asks (gateway.access)
        self.audit = audit
        self.catalog = catalog
        self.policies = policies
        self.planner = planner
        self.backends = backends
        self.metrics = metrics
        self.query_ids = QueryIdGenerator()
        # Its own few threads: large statements queue here instead of taking every default-executor thread.
        self._planning = ThreadPoolExecutor(max_workers=planning_threads, thread_name_prefix="planning")

    def close(self) -> None:
        self._planning.shutdown(wait=False, cancel_futures=True)

    async def authenticate(self, credentials: Credentials, *, frontend: str = "trino_http") -> Identity:
        """The authenticated principal; raises AuthenticationFailed after reporting it."""
        try:
            identity = await self.authenticator.authenticate(credentials)
        except AuthenticationFailed as failure:
            self.record_rejected_attempt(credentials, failure, frontend=frontend)
            raise
        self.metrics.authentications.labels(identity.auth_method).inc()
        return identity

    def record_rejected_attempt(self, credentials: Credentials, failure: AuthenticationFailed, *,
                                frontend: str = "trino_http") -> None:
        """Every failed authentication passes here exactly once: a metric and a log line now, the audit
        trail's hook later. Never given a secret: `credentials` masks it, `failure` never holds it."""
        self.metrics.auth_failures.labels(failure.reason).inc()
        auth_log.warning("authentication failed", extra={"query": auth_failure_log_fields(credentials, failure)})
        self.record_refused_request(client_address=credentials.client_address,
                                    user=credentials.session_user or credentials.username,
                                    auth_method=credentials.scheme, error_name="AUTHENTICATION_FAILED",
                                    reason=f"authentication failed ({failure.reason})", message=failure.message,
                                    frontend=frontend)

    def record_refused_request(self, *, client_address: str | None, user: str | None, error_name: str,
                               reason: str, message: str, source: str | None = None, sql: str | None = None,
                               auth_method: str | None = None, frontend: str = "trino_http") -> None:
        """The audit record of a request refused before it became a query (authentication, bad body or
        headers, draining). `user` is what the client claimed, unverified. Never given a secret."""
        self.audit.append(refused_request_record(
            client_address=client_address, user=user, error_name=error_name, reason=reason, message=message,
            source=source, sql=sql, auth_method=auth_method, frontend=frontend,
            redact=self.audit.options.redact_literals))

    def session_identity(self, principal: Identity, session: Session) -> Identity:
        """Who the statement runs as: the principal itself, or the session user (X-Trino-User) when an
        `impersonation:` policy rule lets the principal act as them; otherwise PERMISSION_DENIED."""
        if session.user == principal.user:
            return principal
        allowed = self.access.may_act_as(principal, session.user, session.source)
        if not allowed:
            self.metrics.impersonation_denials.inc()
            raise PermissionDenied(f"User {principal.user} cannot impersonate user {session.user}")
        return principal.acting_as(session.user)

    async def describe(self, sql: str, session: Session, principal: Identity) -> tuple[Column, ...] | None:
        """The result columns `sql` would have, without executing it (pgwire's Describe of a prepared
        statement). Identity, planning and authorization are exactly those of execution, so the columns are
        the rewritten query's (masks included) and a statement execution would refuse fails here alike. Then
        the backend describes the planned SQL (`Backend.describe`). Audited as a decision: one record of
        statement type `describe` with its tables, columns and rules, no backend, no rows, no charge.
        None: the statement returns no rows."""
        run = QueryRun(self, self.query_ids.next(), sql, session, principal)
        await run.describe()
        if run.error is not None:
            raise run.error
        return run.columns

    def record_command(self, sql: str, session: Session, principal: Identity, statement_type: str) -> None:
        """The audit record of a command a frontend answered itself that changes what later records say
        (pgwire's SET/RESET/DISCARD: source, schema, time zone), under the session it was sent in: allowed,
        nothing planned or executed. Fails closed like a query while records cannot be kept."""
        self.audit.admit()
        identity = self.session_identity(principal, session)
        run = QueryRun(self, self.query_ids.next(), sql, session, principal)
        run.answered_as, run.identity = statement_type, identity
        run._finish(None)

    def submit(self, sql: str, session: Session, principal: Identity, *,
               policy: PolicyContext | None = None) -> QueryRun:
        """`policy`: plan under these rules instead of the ones in force (a policy canary trying a new
        version before it is installed)."""
        run = QueryRun(self, self.query_ids.next(), sql, session, principal, policy=policy)
        self.history.add(run)
        return run

    async def plan(self, sql: str, session: Session, identity: Identity, *,
                   policy: PolicyContext | None = None) -> Plan:
        """Planning is CPU work: small statements (nearly all) are planned inline, which is cheaper than a
        thread hop; large ones on a planning thread, so a 1 MB IN list never stalls other clients. Size counts
        every text planning may parse: the body (EXECUTE IMMEDIATE's text is inside it) and the session's
        prepared statements (X-Trino-Prepared-Statement)."""
        snapshot = self.catalog.current.snapshot
        policy = policy or PolicyContext(self.policies.current, self.policies.views, self.access.grants(identity))
        size = len(sql) + sum(len(text) for text in session.prepared_statements.values())
        if size <= INLINE_PLANNING_LIMIT:
            return self.planner.plan(sql, session=session, identity=identity, snapshot=snapshot, policy=policy)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._planning, lambda: self.planner.plan(
            sql, session=session, identity=identity, snapshot=snapshot, policy=policy))


class QueryRun:
    """One statement from submission to its end. Never raises from `start`; failures land in `error`."""

    answered_as: str | None = None  # the statement type of a run that never executes (describe, set, ...)

    def __init__(self, pipeline: Pipeline, query_id: str, sql: str, session: Session, principal: Identity, *,
                 policy: PolicyContext | None = None) -> None:
        self.pipeline = pipeline
        self._policy = policy  # None: the policy in force when it is planned
        self.query_id = query_id
        self.sql = sql
        self.session = session
        self.principal = principal  # who authenticated; `identity` is who the statement runs as
        self.state = QueryState.QUEUED
        self.identity: Identity | None = None
        self.plan: Plan | None = None
        self.columns: tuple[Column, ...] | None = None  # as the engine types them
        self.trino_columns: tuple[Column, ...] | None = None  # with Trino's declared types, where derived
        self.error: GatewayError | None = None
        self.target: str | None = None  # the backend running it, if any (not the metadata engine)
        self.started = time.perf_counter()
        self.received_at = utc_now()
        self.finished_at: float | None = None
        self._execution: Execution | None = None
        self._finished = False
        self.admission: Admission | None = None  # its place in workload management, once it has one
        self.cache_hit = False
        self._lease: Lease | None = None  # while it runs a query identical ones may wait for
        self._rows_out = 0
        self._bytes_out = 0
        self._backend_sql: str | None = None  # the plan's SQL with the mask key in it, made once
        pipeline.metrics.queries_in_flight.inc()

    # -- what frontends read -------------------------------------------------------------------------------

    @property
    def change(self) -> SessionChange | None:
        return self.plan.change if self.plan is not None else None

    @property
    def update_type(self) -> str | None:
        return self.plan.update_type if self.plan is not None else None

    @property
    def column_zones(self) -> tuple[str | None, ...]:
        """Per result column, the zone its timestamp with time zone values are shown in, where the plan knows
        it (a literal's zone, AT TIME ZONE); None: the session's."""
        declared = self.plan.output_types if self.plan is not None else ()
        count = len(self.trino_columns or ())
        if len(declared) != count:
            return (None,) * count
        return tuple(o.zone if o is not None else None for o in declared)

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

    @property
    def queued_seconds(self) -> float:
        return self.admission.queued_seconds if self.admission is not None else 0.0

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        pipeline = self.pipeline
        try:
            pipeline.audit.admit()  # fail closed: nothing runs while its record could not be kept
            self.identity = pipeline.session_identity(self.principal, self.session)
            began = time.perf_counter()
            self.plan = plan = await pipeline.plan(self.sql, self.session, self.identity, policy=self._policy)
            pipeline.metrics.planning_duration.observe(time.perf_counter() - began)
            cached = await self._consult_cache(plan)
            if plan.kill is not None:
                await pipeline.workload.kill(plan.kill.query_id, plan.kill.message, self.identity)
            elif cached is not None:
                pass  # answered from the cache: no backend work, so no admission either
            elif plan.columns is None and plan.sql is not None and plan.target not in (None, METADATA_TARGET):
                await self._admit(plan)
                if self._finished:
                    return  # cancelled while it was being admitted
            self.state = QueryState.RUNNING
            if cached is not None:
                self._execution = from_cache(cached)
            elif plan.columns is not None:
                self._execution = StaticExecution(columns=plan.columns, rows=plan.rows)
            elif plan.sql is not None and plan.target is not None:
                execution = await self._execute(plan.target, plan.sql)
                if self._lease is not None:
                    self._execution = pipeline.cache.recording(execution, self._lease, ttl_seconds=self._cache_ttl(),
                                                               tables=tuple(str(t) for t in plan.tables))
                if plan.describe_output:
                    columns, rows = describe_output_rows(declared_columns(execution.columns, plan.output_types))
                    await execution.cancel()
                    self._execution = StaticExecution(columns=columns, rows=rows)
                elif plan.io_explain is not None:
                    self._execution = await io_explain_answer(plan.io_explain, execution)
            if self._finished:
                return  # cancelled while starting
            if self._execution is not None:
                self.columns = self._execution.columns
                self.trino_columns = declared_columns(self.columns, plan.output_types)
            else:
                self._finish(None)
        except Exception as error:
            self._failed(error)

    def _failed(self, error: Exception) -> None:
        """End the run with `error` (called while handling it); anything not a GatewayError is a bug."""
        if isinstance(error, GatewayError):
            if isinstance(error, PermissionDenied):
                self.pipeline.metrics.policy_denials.inc()
            self._finish(error)
        else:  # a bug: report it as internal, log it with its stack
            log.exception("query %s failed inside the gateway", self.query_id)
            self._finish(InternalError(f"internal error ({type(error).__name__})"))

    async def describe(self) -> None:
        """Plan and authorize as `start` does, then learn the result columns without executing
        (`Pipeline.describe`). Never raises; failures land in `error`."""
        pipeline = self.pipeline
        self.answered_as = "describe"  # its audit record and metrics say so, whatever the statement is
        try:
            pipeline.audit.admit()
            self.identity = pipeline.session_identity(self.principal, self.session)
            self.plan = plan = await pipeline.plan(self.sql, self.session, self.identity)
            self.columns = await self._described(plan)
            self._finish(None)
        except Exception as error:
            self._failed(error)

    async def _described(self, plan: Plan) -> tuple[Column, ...] | None:
        """The columns `start` would report for `plan`, from the plan itself or the engine's description."""
        if plan.kill is not None:
            return None
        if plan.columns is not None:
            return plan.columns
        if plan.describe_output:
            return describe_output_rows(())[0]
        if plan.io_explain is not None:
            return (Column(IO_PLAN_COLUMN, VARCHAR),)
        if plan.sql is None or plan.target is None:
            return None
        if plan.target == METADATA_TARGET:
            return await self.pipeline.catalog.current.engine.describe(plan.sql, setup=self._live_tables())
        return await self.pipeline.backends[plan.target].describe(self._runnable(plan.sql),
                                                                  context=self._execution_context())

    async def _consult_cache(self, plan: Plan) -> CachedResult | None:
        """A cached (or coalesced) result for the plan, or None — then, for a cacheable plan, this run holds
        the lease to run it and cache the result for identical queries."""
        cache = self.pipeline.cache
        key = cache.key_for(plan, self.session)
        if key is None:
            return None
        outcome = await cache.obtain(key, self._wait_queued)
        if outcome is None:
            return None
        if isinstance(outcome, Lease):
            self._lease = outcome
            return None
        self.cache_hit = True
        if self.admission is not None:  # it waited for an identical query: no longer queued while it streams
            self.pipeline.workload.leave(self.admission)
        return outcome

    async def _wait_queued(self, waiting: Awaitable[T]) -> T:
        """Waiting for an identical query's result is queueing: in the statement's resource group, listed as
        QUEUED and bounded by the group's queue_timeout (the admission is kept if it must run after all)."""
        workload = self.pipeline.workload
        self.admission = admission = workload.enter(self._admission_request(), self.cancel)
        return await workload.wait(admission, waiting)

    def _admission_request(self) -> AdmissionRequest:
        assert self.identity is not None and self.plan is not None
        return AdmissionRequest(query_id=self.query_id, identity=self.identity, source=self.session.source,
                                client_tags=self.session.client_tags,
                                query_type=QUERY_TYPES.get(self.plan.statement_kind, "SELECT"), sql=self.sql)

    def _cache_ttl(self) -> float:
        group_ttl = self.admission.group.cache_ttl if self.admission is not None else None
        return group_ttl if group_ttl is not None else self.pipeline.cache.default_ttl

    async def _admit(self, plan: Plan) -> None:
        """Wait in the statement's resource group until it may run on its backend."""
        assert self.identity is not None and plan.target is not None and plan.sql is not None
        workload = self.pipeline.workload
        if self.admission is None:  # else it entered its group already, waiting for an identical query
            self.admission = workload.enter(self._admission_request(), self.cancel)
        backend, sql = self.pipeline.backends[plan.target], self._runnable(plan.sql)
        await workload.admit(self.admission, lambda: backend.estimate_scan_bytes(sql))

    def _runnable(self, sql: str) -> str:
        """The only place planned SQL becomes runnable: the mask key replaces its sentinel here."""
        if self._backend_sql is None:
            self._backend_sql = self.pipeline.planner.mask_key.reveal(sql)
        return self._backend_sql

    async def _execute(self, target: str, sql: str) -> Execution:
        """Start `sql` on `target`. The execution is reachable by `cancel` before it starts running."""
        if target == METADATA_TARGET:
            self._execution = self.pipeline.catalog.current.engine.execution(sql, setup=self._live_tables())
        else:
            group = self.admission.group if self.admission is not None else None
            self._execution = self.pipeline.backends[target].execution(
                self._runnable(sql),
                time_limit_seconds=group.max_execution_time if group is not None else None,
                context=self._execution_context())
            self.target = target
            self.pipeline.metrics.backend_running.labels(target).inc()
        await self._execution.start()
        return self._execution

    def _execution_context(self) -> ExecutionContext:
        """Who the backend query runs for; the cost center as the meter will charge it."""
        identity = self.identity
        assert identity is not None
        meter = self.pipeline.meter
        cost_center = meter.cost_center_of(identity) if meter is not None else identity.cost_center
        return ExecutionContext(query_id=self.query_id, user=identity.user, source=self.session.source,
                                client_tags=tuple(sorted(self.session.client_tags)), cost_center=cost_center)

    def _live_tables(self) -> CursorSetup | None:
        """system.runtime.* tables read by this metadata query, filled with what its identity may see."""
        tables = self.plan.tables if self.plan is not None else ()
        if not reads_live_tables(tables) or self.identity is None:
            return None
        pipeline = self.pipeline
        return cursor_setup(live_rows(tables, history=pipeline.history, viewer=self.identity, node=pipeline.node))

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
        elif self.admission is not None and self.admission.group.max_result_rows is not None:
            self._rows_out += len(rows)
            if self._rows_out > self.admission.group.max_result_rows:  # an error, never a silently cut result
                await self.cancel(self.pipeline.workload.result_rows_exceeded(self.admission))
                return None
        return rows

    def count_result_bytes(self, size: int) -> None:
        """The frontend reports the encoded size of the rows it is about to send; past the query's cap (its
        resource group's `max_result_bytes`, else `limits.max_result_bytes`) this raises, and the frontend ends
        the query with the error. Only this client is affected."""
        self._bytes_out += size
        group = self.admission.group if self.admission is not None else None
        limit = group.max_result_bytes if group is not None and group.max_result_bytes is not None \
            else self.pipeline.max_result_bytes
        if self._bytes_out <= limit:
            return
        if group is not None:
            self.pipeline.metrics.workload_kills.labels(group.name, "result_bytes").inc()
        where = f"of resource group '{group.name}' (max_result_bytes)" if group is not None and \
            group.max_result_bytes is not None else "(limits.max_result_bytes)"
        raise InsufficientResources(f"Query exceeded the maximum of {limit} result bytes {where}; add a LIMIT, "
                                    f"aggregate, or select fewer columns", error_name="EXCEEDED_RESULT_BYTES_LIMIT")

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
        if error is not None:
            # A backend message may quote the SQL it ran, which holds the mask key.
            error.message = self.pipeline.planner.mask_key.redact(error.message)
        self.error = error
        self.state = QueryState.FAILED if error is not None else QueryState.FINISHED
        if self.admission is not None:
            self.pipeline.workload.leave(self.admission)
        if self._lease is not None:  # no-op once the result was cached; followers get a statement error
            self.pipeline.cache.release(self._lease, error)
        metrics = self.pipeline.metrics
        kind = self.answered_as or (self.plan.statement_kind if self.plan is not None else "unplanned")
        ending = "canceled" if isinstance(error, QueryCanceled) else ("failed" if error else "finished")
        metrics.queries_in_flight.dec()
        metrics.queries.labels(kind, ending).inc()
        metrics.query_duration.labels(ending).observe(self.elapsed_seconds)
        if error is not None:
            metrics.query_errors.labels(error.error_name).inc()
        if self.target is not None:
            metrics.backend_running.labels(self.target).dec()
            metrics.backend_duration.labels(self.target).observe(self.stats.elapsed_seconds)
        try:
            outcome = self._outcome(kind, error)
            log_query(log, outcome)
            record = query_record(outcome, redact=self.pipeline.audit.options.redact_literals)
        except Exception:  # a bug in building the record; the attempt still ends
            log.exception("query %s: building its audit record failed", self.query_id)
            return
        charge = self._charge(record)
        self.pipeline.audit.append(record, charge)
        if charge is not None and self.pipeline.meter is not None and self.pipeline.meter.on_charge is not None:
            self.pipeline.meter.on_charge(charge)
        if self.pipeline.lineage is not None:
            self.pipeline.lineage(outcome)

    def _charge(self, record: AuditRecord) -> Charge | None:
        """The ledger charge of a query that ran on a backend or was answered from the cache (cost 0)."""
        meter = self.pipeline.meter
        if meter is None or (self.target is None and not self.cache_hit):
            return None
        try:
            charge = meter.charge(record, identity=self.identity or self.principal, stats=self.stats,
                                  catalog=self.target or (self.plan.target if self.plan is not None else None),
                                  cache_hit=self.cache_hit, client_info=self.session.client_info)
        except Exception:  # a bug in metering: the record is still kept, uncharged, and the bug is loud
            log.exception("query %s: metering failed", self.query_id)
            return None
        record.cost, record.cost_center = charge.cost, charge.cost_center
        return charge

    def _outcome(self, kind: str, error: GatewayError | None) -> QueryOutcome:
        plan = self.plan
        shown = self.pipeline.planner.mask_key.display(plan.sql) if plan is not None and plan.sql else None
        return QueryOutcome(
            query_id=self.query_id, received_at=self.received_at, sql=self.sql, session=self.session,
            principal=self.principal, identity=self.identity or self.principal, statement_kind=kind,
            state=self.state.value, error=error, stats=self.stats, elapsed_seconds=self.elapsed_seconds,
            queued_seconds=self.queued_seconds, backend=self.target,
            dialect=self.pipeline.backends[self.target].dialect if self.target is not None else "duckdb",
            planned_sql=shown, tables=[str(t) for t in plan.tables] if plan is not None else None,
            columns_read={t: list(c) for t, c in plan.columns_read.items()} if plan is not None else {},
            policy_version=plan.policy_version if plan is not None else None,
            rules=list(plan.rules) if plan is not None else [], cache_hit=self.cache_hit,
            resource_group=self.admission.group.name if self.admission is not None else None,
            queue_wait_seconds=self.admission.queued_seconds if self.admission is not None else None)


async def io_explain_answer(explain: IoExplain, execution: Execution) -> StaticExecution:
    """The one-row answer, from the backend's EXPLAIN (FORMAT JSON) rows (explain_key, explain_value)."""
    text = ""
    while (rows := await execution.fetch(1024)) is not None:
        text += "".join(str(row[-1]) for row in rows)
    return StaticExecution(columns=(Column(IO_PLAN_COLUMN, VARCHAR),), rows=((from_duckdb_plan(explain, text),),))
