"""The query path, in order. This is the one place that knows the order of the stages:

    identity    who is asking (dev: the session user)                     identity.Authenticator
    classify    parse one statement, say what it is                      sql.statements.classify
    session     USE / SET SESSION / PREPARE / transactions: no backend   (here: _session_change)
    resolve     every table as catalog.schema.table, exists, one target  sql.resolve.resolve_query
    generate    backend dialect, gateway-answered functions, _colN names sql.generate.to_backend_sql
    execute     on the target backend (or the metadata engine)          backends.*
    finish      exactly once per attempt: metrics and one log line       QueryRun._finish

Frontends create a `QueryRun` per statement with `Pipeline.submit`, call `start()`, then `fetch()` rows until
None, or `cancel()`. Protocol details (paging, headers, JSON) stay in the frontend.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlglot import exp

from gateway import __version__
from gateway.backends.base import Backend, Column, Execution, ExecutionStats, Row
from gateway.errors import GatewayError, InternalError, NotFound, NotSupported, QueryCanceled, UserError
from gateway.identity import Authenticator, Identity
from gateway.metadata import CatalogService
from gateway.metrics import Metrics
from gateway.query_id import QueryIdGenerator
from gateway.session import Session, SessionChange
from gateway.sql import statements as st
from gateway.sql.generate import SessionValues, to_backend_sql
from gateway.sql.parameters import bind_parameters
from gateway.sql.resolve import METADATA_TARGET, resolve_query
from gateway.sql.show import show_query
from gateway.static_result import StaticExecution
from gateway.types import BIGINT, BOOLEAN, VARCHAR

log = logging.getLogger("gateway.query")


class QueryState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Prepared:
    """What `_plan` decided: run `sql` on `target`, or answer from `static`, or change the session."""

    statement_kind: str
    target: str | None = None
    sql: str | None = None
    static: StaticExecution | None = None
    change: SessionChange | None = None
    update_type: str | None = None
    describe_output: bool = False  # run `sql` only to learn its columns, and answer with them as rows


class Pipeline:
    def __init__(self, *, authenticator: Authenticator, catalog: CatalogService, backends: dict[str, Backend],
                 metrics: Metrics, default_catalog: str) -> None:
        self.authenticator = authenticator
        self.catalog = catalog
        self.backends = backends
        self.metrics = metrics
        self.default_catalog = default_catalog
        self.query_ids = QueryIdGenerator()

    def submit(self, sql: str, session: Session) -> QueryRun:
        return QueryRun(self, self.query_ids.next(), sql, session)


class QueryRun:
    """One statement from submission to its end. Never raises from `start`; failures land in `error`."""

    def __init__(self, pipeline: Pipeline, query_id: str, sql: str, session: Session) -> None:
        self.pipeline = pipeline
        self.query_id = query_id
        self.sql = sql
        self.session = session
        self.state = QueryState.QUEUED
        self.identity: Identity | None = None
        self.statement_kind = "unknown"
        self.columns: tuple[Column, ...] | None = None
        self.change: SessionChange | None = None
        self.update_type: str | None = None
        self.error: GatewayError | None = None
        self.target: str | None = None
        self.created = time.time()
        self.started = time.perf_counter()
        self.finished_at: float | None = None
        self._execution: Execution | None = None
        self._finished = False
        pipeline.metrics.queries_in_flight.inc()

    # -- lifecycle -----------------------------------------------------------------------------------------

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

    async def start(self) -> None:
        metrics = self.pipeline.metrics
        try:
            self.identity = self.pipeline.authenticator.authenticate(self.session)
            began = time.perf_counter()
            prepared = self._plan()
            metrics.planning_duration.observe(time.perf_counter() - began)
            self.statement_kind = prepared.statement_kind
            self.change = prepared.change
            self.update_type = prepared.update_type
            self.state = QueryState.RUNNING
            if prepared.static is not None:
                self._execution = prepared.static
            elif prepared.sql is not None and prepared.target is not None:
                await self._execute(prepared.target, prepared.sql)
                if prepared.describe_output:
                    self._execution = await self._describe_output(self._execution_or_fail())
            if self._finished:
                return  # cancelled while starting
            if self._execution is not None:
                self.columns = self._execution.columns
            else:
                self._finish(None)
        except GatewayError as error:
            self._finish(error)
        except Exception as error:  # a bug: report it as internal, log it with its stack
            log.exception("query %s failed inside the gateway", self.query_id)
            self._finish(InternalError(f"internal error ({type(error).__name__})"))

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
        outcome = "canceled" if isinstance(error, QueryCanceled) else ("failed" if error else "finished")
        metrics.queries_in_flight.dec()
        metrics.queries.labels(self.statement_kind, outcome).inc()
        metrics.query_duration.labels(outcome).observe(self.elapsed_seconds)
        if error is not None:
            metrics.query_errors.labels(error.error_name).inc()
        if self.target is not None:
            metrics.backend_running.labels(self.target).dec()
            metrics.backend_duration.labels(self.target).observe(self.stats.elapsed_seconds)
        stats = self.stats
        log.info("query", extra={"query": {
            "query_id": self.query_id,
            "user": self.session.user,
            "source": self.session.source,
            "client_address": self.session.client_address,
            "catalog": self.session.catalog,
            "schema": self.session.schema,
            "statement": self.statement_kind,
            "state": self.state.value,
            "error_name": error.error_name if error else None,
            "error": error.message if error is not None and not isinstance(error, InternalError) else None,
            "elapsed_ms": round(self.elapsed_seconds * 1000, 3),
            "rows": stats.rows,
            "backend": self.target,
            "backend_query_id": stats.backend_query_id,
            "sql": self.sql[:2000],
        }})

    # -- stages --------------------------------------------------------------------------------------------

    def _plan(self) -> Prepared:
        statement = st.classify(self.sql)
        return self._plan_statement(statement, parameters_allowed=False)

    def _plan_statement(self, statement: st.Statement, *, parameters_allowed: bool) -> Prepared:
        session = self.session
        if isinstance(statement, st.QueryStatement):
            return self._plan_query(statement.tree, "select", parameters_allowed=parameters_allowed)
        if isinstance(statement, st.Show):
            if statement.what == "SESSION":
                return Prepared("show", static=_show_session(session))
            snapshot = self.pipeline.catalog.current.snapshot
            tree = show_query(statement, catalog=session.catalog, schema=session.schema, snapshot=snapshot)
            return self._plan_query(tree, "show", parameters_allowed=False)
        if isinstance(statement, st.Execute):
            text = self._prepared_text(statement.name) if statement.name is not None else statement.sql or ""
            inner = st.classify(text)
            if not isinstance(inner, st.QueryStatement):
                raise NotSupported("only queries can be executed as prepared statements")
            tree = bind_parameters(inner.tree, statement.parameters)
            return self._plan_query(tree, "execute", parameters_allowed=False)
        if isinstance(statement, st.DescribeInput):
            inner = st.classify(self._prepared_text(statement.name))
            count = len(list(inner.tree.find_all(exp.Placeholder))) if isinstance(inner, st.QueryStatement) else 0
            return Prepared("describe", static=StaticExecution(
                columns=(Column("Position", BIGINT), Column("Type", VARCHAR)),
                rows=[(i, "unknown") for i in range(count)]))
        if isinstance(statement, st.DescribeOutput):
            return self._plan_describe_output(statement.name)
        if isinstance(statement, st.Explain):
            planned = self._plan_query(statement.query.tree, "explain", parameters_allowed=False)
            if statement.options:
                raise NotSupported(f"EXPLAIN ({', '.join(statement.options)}) is not supported; use plain EXPLAIN")
            return Prepared("explain", target=planned.target, sql=f"EXPLAIN {planned.sql}")
        return self._session_change(statement)

    def _plan_query(self, tree: exp.Query, kind: str, *, parameters_allowed: bool) -> Prepared:
        if not parameters_allowed and tree.find(exp.Placeholder) is not None:
            raise UserError("the statement has ? parameters but no values for them; use PREPARE and "
                            "EXECUTE ... USING", error_name="GENERIC_USER_ERROR")
        session = self.session
        metadata = self.pipeline.catalog.current
        resolved = resolve_query(tree, catalog=session.catalog, schema=session.schema,
                                 snapshot=metadata.snapshot, default_catalog=self.pipeline.default_catalog)
        is_metadata = resolved.target == METADATA_TARGET
        dialect = "duckdb" if is_metadata else self.pipeline.backends[resolved.target].dialect
        values = SessionValues(user=session.user, version=__version__, catalog=session.catalog,
                               schema=session.schema, time_zone=session.time_zone or "UTC")
        sql = to_backend_sql(resolved, dialect=dialect, session=values, metadata=is_metadata)
        return Prepared(kind, target=resolved.target, sql=sql)

    def _plan_describe_output(self, name: str) -> Prepared:
        inner = st.classify(self._prepared_text(name))
        if not isinstance(inner, st.QueryStatement):
            raise NotSupported("DESCRIBE OUTPUT works for prepared queries only")
        tree = inner.tree.copy()
        for placeholder in list(tree.find_all(exp.Placeholder)):
            placeholder.replace(exp.Null())
        planned = self._plan_query(exp.select("*").from_(tree.subquery("q")).limit(0), "describe",
                                   parameters_allowed=False)
        return Prepared("describe", target=planned.target, sql=planned.sql, describe_output=True)

    def _execution_or_fail(self) -> Execution:
        if self._execution is None:
            raise InternalError("no execution to describe")
        return self._execution

    async def _describe_output(self, execution: Execution) -> StaticExecution:
        columns = execution.columns
        await execution.cancel()
        names = ("Column Name", "Catalog", "Schema", "Table", "Type", "Type Size", "Aliased")
        return StaticExecution(
            columns=tuple(Column(n, BIGINT if n == "Type Size" else (BOOLEAN if n == "Aliased" else VARCHAR))
                          for n in names),
            rows=[(c.name, "", "", "", c.type.display(), 0, False) for c in columns])

    def _prepared_text(self, name: str) -> str:
        text = self.session.prepared_statements.get(name)
        if text is None:
            raise NotFound(f"Prepared statement not found: {name}")
        return text

    def _session_change(self, statement: st.Statement) -> Prepared:
        session = self.session
        snapshot = self.pipeline.catalog.current.snapshot
        if isinstance(statement, st.Use):
            catalog = statement.catalog or session.catalog
            if catalog is None:
                raise UserError("Catalog must be specified when session catalog is not set",
                                error_name="MISSING_CATALOG_NAME")
            if not snapshot.has_catalog(catalog):
                raise NotFound(f"Catalog '{catalog}' does not exist", error_name="CATALOG_NOT_FOUND")
            if not snapshot.has_schema(catalog, statement.schema):
                raise NotFound(f"Schema '{catalog}.{statement.schema}' does not exist",
                               error_name="SCHEMA_NOT_FOUND")
            return Prepared("use", update_type="USE",
                            change=SessionChange(set_catalog=catalog, set_schema=statement.schema))
        if isinstance(statement, st.SetSession):
            return Prepared("set_session", update_type="SET SESSION",
                            change=SessionChange(set_properties={statement.name: statement.value}))
        if isinstance(statement, st.ResetSession):
            return Prepared("reset_session", update_type="RESET SESSION",
                            change=SessionChange(reset_properties=[statement.name]))
        if isinstance(statement, st.Prepare):
            return Prepared("prepare", update_type="PREPARE",
                            change=SessionChange(added_prepared={statement.name: statement.sql}))
        if isinstance(statement, st.Deallocate):
            self._prepared_text(statement.name)
            return Prepared("deallocate", update_type="DEALLOCATE",
                            change=SessionChange(deallocated_prepared=[statement.name]))
        if isinstance(statement, st.StartTransaction):
            if not statement.read_only:
                raise NotSupported("the gateway is read-only: start transactions with READ ONLY",
                                   error_name="READ_ONLY_VIOLATION")
            return Prepared("transaction", update_type="START TRANSACTION",
                            change=SessionChange(started_transaction_id=str(uuid.uuid4())))
        if isinstance(statement, st.EndTransaction):
            return Prepared("transaction", update_type="COMMIT" if statement.commit else "ROLLBACK",
                            change=SessionChange(clear_transaction=True))
        raise NotSupported(f"{type(statement).__name__} statements are not supported")

    async def _execute(self, target: str, sql: str) -> Execution:
        """Start `sql` on `target`. The execution is reachable by `cancel` before it starts running."""
        metrics = self.pipeline.metrics
        if target == METADATA_TARGET:
            # the metadata engine is not a backend: not counted as one
            self._execution = self.pipeline.catalog.current.engine.execution(sql)
        else:
            self._execution = self.pipeline.backends[target].execution(sql)
            self.target = target
            metrics.backend_running.labels(target).inc()
        await self._execution.start()
        return self._execution


def _show_session(session: Session) -> StaticExecution:
    columns = tuple(Column(name, VARCHAR) for name in ("Name", "Value", "Default", "Type", "Description"))
    rows = [(name, value, "", "varchar", "set by the client") for name, value in sorted(session.properties.items())]
    return StaticExecution(columns=columns, rows=rows)
