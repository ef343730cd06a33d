"""Planning: from a client statement and who sent it to exactly what will run, without running anything.

    classify    one statement, what kind                               sql.statements.classify
    resolve     every table as catalog.schema.table, exists, target    sql.resolve.resolve_query
    functions   no function that reads files, URLs or engine state     sql.functions.check_functions
    authorize   access, row filters, column masks (secure views)       sql.rewrite.secure_rewrite
    generate    backend dialect; gateway-answered functions; _colN     sql.generate.to_backend_sql

Metadata queries (information_schema, system.*) are not rewritten through table policies; they are restricted
to the tables the caller may read. Plans are immutable and cached per (statement, session facts, identity,
policy version, catalog snapshot), so a repeated dashboard query skips all of the above; a statement that
differs from an earlier one only in its comparison constants reuses that plan's proven template
(sql.templates). `gateway explain` uses the same planner as the server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

from cachetools import LRUCache
from sqlglot import exp

from gateway.catalog import CatalogSnapshot, TableName
from gateway.errors import (
    USER_ERROR,
    BackendUnavailable,
    GatewayError,
    InternalError,
    NotFound,
    NotSupported,
    PermissionDenied,
    UserError,
)
from gateway.identity import Identity
from gateway.mask_key import MaskKey
from gateway.metrics import Metrics
from gateway.pg_catalog import PG_DIALECT, pg_facts, plan_catalog_query, show_as_query
from gateway.planner_show_explain import SHOW_FORMS, plan_explain, plan_show
from gateway.policy.decide import decide_table
from gateway.policy.model import PolicySet, TableGrant
from gateway.relations import Column, Row, SqlTarget
from gateway.session import Session, SessionChange
from gateway.sql import statements as st
from gateway.sql.columns import columns_read
from gateway.sql.determinism import is_deterministic
from gateway.sql.explain_io import IoExplain
from gateway.sql.functions import check_functions
from gateway.sql.generate import SessionValues, Visibility, to_backend_sql
from gateway.sql.limits import StatementLimits
from gateway.sql.parameters import bind_parameters, number_placeholders
from gateway.sql.parse import TOO_DEEP
from gateway.sql.postgres_input import postgres_literals
from gateway.sql.resolve import METADATA_TARGET, resolve_query
from gateway.sql.rewrite import SecureViews, secure_rewrite
from gateway.sql.show import describe_target, show_query
from gateway.sql.templates import CutStatement, SqlTemplate, backend_template, cut_literals, literals_are_parameters
from gateway.sql.trino_output_types import OutputType, output_types
from gateway.types import BIGINT, BOOLEAN, VARCHAR


@dataclass(frozen=True)
class KillQuery:
    """`CALL system.runtime.kill_query(query_id => ..., message => ...)`: carried out by the pipeline."""

    query_id: str
    message: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a statement does: run `sql` on `target`, answer `rows` itself, or change the session."""

    statement_kind: str
    target: str | None = None
    sql: str | None = None
    columns: tuple[Column, ...] | None = None  # with `rows`: a result the gateway answers itself
    rows: tuple[Row, ...] = ()
    change: SessionChange | None = None
    update_type: str | None = None
    describe_output: bool = False  # run `sql` only to learn its columns, and answer with them as rows
    tables: tuple[TableName, ...] = ()
    rules: tuple[str, ...] = ()
    policy_version: str | None = None
    columns_read: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # table -> columns (for audit)
    deterministic: bool = False  # the same statement gives the same answer (no now(), random(), ...): cacheable
    kill: KillQuery | None = None  # CALL system.runtime.kill_query
    restricted: bool = False  # a table read has a row filter or column mask for this identity (or it is metadata)
    io_explain: IoExplain | None = None  # `sql` is the backend's EXPLAIN: answer Trino's IO plan from it
    grants: tuple[str, ...] = ()  # the just-in-time grants this plan relies on (part of its result-cache key)
    output_types: tuple[OutputType | None, ...] = ()  # Trino's declared type of each result column, where derived


@dataclass(frozen=True)
class PolicyContext:
    policy: PolicySet
    views: SecureViews
    grants: tuple[TableGrant, ...] = ()  # the identity's active just-in-time grants, as of planning


class Planner:
    def __init__(self, *, backends: Mapping[str, SqlTarget], default_catalog: str, version: str, metrics: Metrics,
                 mask_key: MaskKey, cache_size: int = 4096, limits: StatementLimits | None = None,
                 failed_cache_size: int = 1024) -> None:
        self.backends = backends  # read for their dialect and catalog name only
        self.mask_key = mask_key  # plans carry its sentinel, never the key (MaskKey.reveal at execution)
        self.default_catalog = default_catalog
        self.version = version
        self.metrics = metrics
        self.limits = limits or StatementLimits()
        self._plans: LRUCache[tuple[object, ...], Plan] = LRUCache(maxsize=cache_size)
        # Statements that failed to plan, by a digest of the same key: a repeated bad statement (or a client
        # retrying one) is answered without parsing it again, and the cache holds no statement text.
        self._failures: LRUCache[tuple[object, ...], GatewayError] = LRUCache(maxsize=failed_cache_size)
        self._visibility: LRUCache[tuple[object, ...], Visibility] = LRUCache(maxsize=1024)
        # By frame (sql.templates): a proven template, or SEEN (planned once: the next one builds a template, so
        # a statement run once never pays for the probe) or REFUSED (its literals are not parameters)
        self._templates: LRUCache[tuple[object, ...], _PlanTemplate | str] = LRUCache(maxsize=cache_size)
        self._lock = threading.Lock()  # large statements are planned on worker threads

    def plan(self, sql: str, *, session: Session, identity: Identity, snapshot: CatalogSnapshot,
             policy: PolicyContext) -> Plan:
        key = (sql, session.dialect, session.catalog, session.schema, session.time_zone, session.source,
               tuple(sorted(session.prepared_statements.items())) if session.prepared_statements else (), identity,
               policy.policy.version, _generation(snapshot),
               policy.grants,  # a grant's plan is never served once it is gone (expired, revoked) or to others
               # PostgreSQL catalog answers include the session's settings (current_setting, pg_settings)
               tuple(sorted(session.properties.items())) if session.dialect == PG_DIALECT else ())
        with self._lock:
            cached = self._plans.get(key)
        if cached is not None:
            self.metrics.plan_cache.labels("hit").inc()
            return cached
        failure_key = (hashlib.sha256(repr(key[:7]).encode("utf-8", "surrogatepass")).digest(), *key[7:])
        with self._lock:
            failed = self._failures.get(failure_key)
        if failed is not None:
            self.metrics.plan_cache.labels("failed").inc()
            raise failed.detached()
        cut = cut_literals(sql, session.dialect) if len(sql) <= _TEMPLATED_TEXT else None
        template_key: tuple[object, ...] = (cut.key, *key[1:]) if cut is not None else ()
        if cut is not None:
            with self._lock:
                template = self._templates.get(template_key)
            if isinstance(template, _PlanTemplate):
                self.limits.check_size(sql)  # the same tokens as the template's, but maybe longer literals
                plan = template.plan(cut.values)
                self.metrics.plan_cache.labels("template").inc()
                with self._lock:
                    self._plans[key] = plan
                return plan
        self.metrics.plan_cache.labels("miss").inc()
        planning = _Planning(self, session=session, identity=identity, snapshot=snapshot, policy=policy)
        try:
            try:
                plan = planning.statement(planning.classify(sql))
            except RecursionError:
                raise UserError(TOO_DEEP, error_name="QUERY_REJECTED") from None
        except GatewayError as error:
            if error.error.type == USER_ERROR:  # the statement's own fault: the same key fails the same way
                with self._lock:
                    self._failures[failure_key] = error.detached()
            raise
        if plan.sql is not None and plan.change is None:
            with self._lock:
                self._plans[key] = plan
            if cut is not None and _templatable(plan):
                self._learn_template(template_key, cut, plan, session=session, identity=identity,
                                     snapshot=snapshot, policy=policy)
        return plan

    def _learn_template(self, template_key: tuple[object, ...], cut: CutStatement, plan: Plan, *, session: Session,
                        identity: Identity, snapshot: CatalogSnapshot, policy: PolicyContext) -> None:
        with self._lock:
            seen = self._templates.get(template_key)
            if seen is None:
                self._templates[template_key] = _SEEN
            if seen != _SEEN:
                return
            self._templates[template_key] = _REFUSED  # until proven below; a concurrent planning does not probe
        template = self._prove_template(cut, plan, session=session, identity=identity, snapshot=snapshot,
                                        policy=policy)
        self.metrics.plan_templates.labels("proven" if template is not None else "refused").inc()
        if template is not None:
            with self._lock:
                self._templates[template_key] = template

    def _prove_template(self, cut: CutStatement, plan: Plan, *, session: Session, identity: Identity,
                        snapshot: CatalogSnapshot, policy: PolicyContext) -> _PlanTemplate | None:
        """Plan the statement again with probe literals; a template if that proves them parameters (see
        sql.templates), else None."""
        assert plan.sql is not None and plan.target is not None
        probes = cut.probes()
        planning = _Planning(self, session=session, identity=identity, snapshot=snapshot, policy=policy)
        try:
            statement = planning.classify(cut.with_values(probes))
            if not isinstance(statement, st.QueryStatement) or not literals_are_parameters(statement.tree, cut,
                                                                                          probes):
                return None
            probe = planning.statement(statement)
        except (GatewayError, RecursionError):
            return None
        if probe.sql is None or dataclasses.replace(probe, sql=plan.sql) != plan:
            return None
        sql = backend_template(probe.sql, probes, cut.classes, self.backends[plan.target].dialect)
        if sql is None or sql.render(cut.values) != plan.sql:
            return None
        return _PlanTemplate(probe, sql)

    def visibility(self, identity: Identity, source: str | None, snapshot: CatalogSnapshot,
                   policy: PolicySet, grants: tuple[TableGrant, ...] = ()) -> Visibility:
        """The tables `identity` may read (what metadata shows them)."""
        key = (identity, source, policy.version, _generation(snapshot), grants)
        with self._lock:
            cached = self._visibility.get(key)
        if cached is not None:
            return cached
        tables = frozenset(
            TableName(catalog, table.schema, table.name)
            for catalog, table in snapshot.all_tables()
            if not TableName(catalog, table.schema, table.name).is_metadata
            and decide_table(policy, f"{catalog}.{table.schema}.{table.name}", identity, source, grants).allowed
        )
        visibility = Visibility.of(tables)
        with self._lock:
            self._visibility[key] = visibility
        return visibility


_SEEN, _REFUSED = "seen", "refused"
_TEMPLATED_TEXT = 64 * 1024  # longer statements are rare and not worth the tokenizing on every miss


@dataclass(frozen=True)
class _PlanTemplate:
    prototype: Plan  # planned with the probe literals
    sql: SqlTemplate

    def plan(self, values: tuple[str, ...]) -> Plan:
        return dataclasses.replace(self.prototype, sql=self.sql.render(values))


def _templatable(plan: Plan) -> bool:
    """A backend query whose only literal-dependent part can be its SQL."""
    return (plan.target is not None and plan.target != METADATA_TARGET and plan.columns is None and not plan.rows
            and not plan.describe_output and plan.io_explain is None and plan.kill is None)


def _generation(snapshot: CatalogSnapshot) -> weakref.ref[CatalogSnapshot]:
    """The catalog snapshot as a cache key part: equal only to itself while it lives, and never to a later
    snapshot that happens to reuse its address (as its `id` could be), without keeping it alive."""
    return weakref.ref(snapshot)


class _Planning:
    """One statement's planning; holds the facts every step needs."""

    def __init__(self, planner: Planner, *, session: Session, identity: Identity, snapshot: CatalogSnapshot,
                 policy: PolicyContext) -> None:
        self.planner = planner
        self.session = session
        self.identity = identity
        self.snapshot = snapshot
        self.policy = policy

    def classify(self, text: str, *, parameters: bool = False) -> st.Statement:
        """Every statement text passes here (body, prepared statement, EXECUTE IMMEDIATE): bounded first.
        `parameters`: a prepared query, whose `?` are numbered by their place in the text before parsing."""
        self.planner.limits.check_text(text)
        if self.session.dialect == PG_DIALECT and (show := show_as_query(text)) is not None:
            text = show
        return st.classify(number_placeholders(text) if parameters else text, dialect=self.session.dialect)

    def statement(self, statement: st.Statement) -> Plan:
        session = self.session
        if isinstance(statement, st.QueryStatement):
            return self.query(statement.tree, "select")
        if isinstance(statement, st.Show):
            if statement.what in SHOW_FORMS:
                return plan_show(self, statement)
            if statement.what == "SESSION":
                return _show_session(session)
            if statement.what == "COLUMNS":
                name = describe_target(statement.target, catalog=session.catalog, schema=session.schema,
                                       snapshot=self.snapshot)
                self._require_visible(name, f"Cannot show columns of table {name}")
            tree = show_query(statement, catalog=session.catalog, schema=session.schema, snapshot=self.snapshot)
            # Trino's SHOW columns are capitalised (Catalog, Table, Column); clients read them by name.
            return self.query(tree, "show", output_names=tuple(p.alias_or_name for p in tree.selects))
        if isinstance(statement, st.Execute):
            text = self._prepared_text(statement.name) if statement.name is not None else statement.sql or ""
            inner = self.classify(text, parameters=True)
            if not isinstance(inner, st.QueryStatement):
                raise NotSupported("only queries can be executed as prepared statements")
            return self.query(bind_parameters(inner.tree, statement.parameters), "execute")
        if isinstance(statement, st.DescribeInput):
            inner = self.classify(self._prepared_text(statement.name))
            count = len(list(inner.tree.find_all(exp.Placeholder))) if isinstance(inner, st.QueryStatement) else 0
            return Plan("describe", columns=(Column("Position", BIGINT), Column("Type", VARCHAR)),
                        rows=tuple((i, "unknown") for i in range(count)))
        if isinstance(statement, st.DescribeOutput):
            return self.describe_output(statement.name)
        if isinstance(statement, st.Call):
            return Plan("call", update_type="CALL", kill=kill_query(statement))
        if isinstance(statement, st.Explain):
            if (statement.options or statement.analyze) and (variant := plan_explain(self, statement)) is not None:
                return variant
            planned = self.query(statement.query.tree, "explain")
            if planned.restricted:
                # Engine plans show cardinalities and, through pruning, the range of values a filter removes.
                return Plan("explain", columns=(Column("Query Plan", VARCHAR),),
                            rows=((gateway_plan(planned, self.planner.mask_key),),), tables=planned.tables,
                            rules=planned.rules, policy_version=planned.policy_version,
                            columns_read=planned.columns_read, restricted=True)
            return Plan("explain", target=planned.target, sql=f"EXPLAIN {planned.sql}", tables=planned.tables,
                        rules=planned.rules, policy_version=planned.policy_version,
                        columns_read=planned.columns_read)
        return self.session_change(statement)

    def query(self, tree: exp.Query, kind: str, *, output_names: tuple[str, ...] | None = None) -> Plan:
        if tree.find(exp.Placeholder) is not None:
            raise UserError("the statement has ? parameters but no values for them; use PREPARE and "
                            "EXECUTE ... USING", error_name="GENERIC_USER_ERROR")
        self.planner.limits.check_tree(tree)
        session = self.session
        planner = self.planner
        if session.dialect == PG_DIALECT:
            tree = postgres_literals(tree)
            if (catalog_plan := self._pg_catalog(tree, kind)) is not None:
                return catalog_plan
        resolved = resolve_query(tree, catalog=session.catalog, schema=session.schema, snapshot=self.snapshot,
                                 default_catalog=planner.default_catalog)
        check_functions(resolved.tree, dialect=session.dialect)
        values = SessionValues(user=self.identity.user, version=planner.version, catalog=session.catalog,
                               schema=session.schema, time_zone=session.time_zone or "UTC",
                               postgres_names=session.dialect == PG_DIALECT)
        policy = self.policy.policy
        if resolved.target == METADATA_TARGET:
            visible = planner.visibility(self.identity, session.source, self.snapshot, policy, self.policy.grants)
            sql = to_backend_sql(resolved.tree, dialect="duckdb", session=values, metadata=visible, copy=False,
                                 output_names=output_names)
            return Plan(kind, target=resolved.target, sql=sql, tables=resolved.tables,
                        rules=("metadata restricted to readable tables",), policy_version=policy.version,
                        restricted=True)
        backend = planner.backends.get(resolved.target)
        if backend is None:  # an offline tool whose backend could not be read (the server always has them all)
            raise BackendUnavailable(f"Catalog '{resolved.target}' is not available")
        dialect = backend.dialect
        columns = columns_read(resolved.tree, self.snapshot.column_types())  # before the rewrite changes the tree
        deterministic = is_deterministic(resolved.tree)  # the user's SQL; policy SQL is the admin's
        rewritten = secure_rewrite(resolved.tree, identity=self.identity, policy=policy,
                                   schema=self.snapshot.column_types(), source=session.source, dialect=dialect,
                                   hash_key=planner.mask_key.sentinel(policy.mask_key_version),
                                   views=self.policy.views, copy=False,  # this planning owns the tree
                                   grants=self.policy.grants)
        declared = output_types(rewritten.tree, schema=self.snapshot.column_types())  # before generation
        sql = to_backend_sql(rewritten.tree, dialect=dialect, session=values, metadata=None,
                             backend_catalog=backend.sql_catalog, tables=self.snapshot.table, copy=False,
                             schema=self.snapshot.column_types())
        return Plan(kind, target=resolved.target, sql=sql, tables=resolved.tables, rules=rewritten.rules_applied,
                    policy_version=rewritten.policy_version, columns_read=columns, deterministic=deterministic,
                    restricted=rewritten.restricted, output_types=declared,
                    grants=tuple(r.removeprefix("grant:") for r in rewritten.rules_applied if r.startswith("grant:")))

    def _pg_catalog(self, tree: exp.Query, kind: str) -> Plan | None:
        """A PostgreSQL-dialect query over pg_catalog / information_schema (gateway/pg_catalog.py)."""
        session, planner = self.session, self.planner
        visible = planner.visibility(self.identity, session.source, self.snapshot, self.policy.policy,
                                      self.policy.grants)
        facts = pg_facts(session, default_catalog=planner.default_catalog, version=planner.version)
        answer = plan_catalog_query(tree, facts, visible, lambda t: check_functions(t, dialect=PG_DIALECT))
        if answer is None:
            return None
        planner.metrics.pg_catalog_queries.inc()
        return Plan(kind, target=METADATA_TARGET, sql=answer.sql, tables=answer.tables,
                    rules=("pg_catalog restricted to readable tables",), policy_version=self.policy.policy.version,
                    restricted=True)

    def describe_output(self, name: str) -> Plan:
        inner = self.classify(self._prepared_text(name))
        if not isinstance(inner, st.QueryStatement):
            raise NotSupported("DESCRIBE OUTPUT works for prepared queries only")
        tree = inner.tree.copy()
        for placeholder in list(tree.find_all(exp.Placeholder)):
            placeholder.replace(exp.Null())
        planned = self.query(exp.select("*").from_(tree.subquery("q")).limit(0), "describe")
        return Plan("describe", target=planned.target, sql=planned.sql, describe_output=True, tables=planned.tables,
                    rules=planned.rules, policy_version=planned.policy_version, output_types=planned.output_types)

    # -- what planner_show_explain needs ---------------------------------------------------------------------------

    def answer(self, kind: str, columns: tuple[Column, ...], rows: tuple[Row, ...], *,
               based_on: Plan | None = None) -> Plan:
        """A result the gateway answers itself; `based_on` the plan of the query it stands for (audit)."""
        if based_on is None:
            return Plan(kind, columns=columns, rows=rows)
        return Plan(kind, columns=columns, rows=rows, tables=based_on.tables, rules=based_on.rules,
                    policy_version=based_on.policy_version, columns_read=based_on.columns_read)

    def visible_tables(self) -> frozenset[TableName]:
        return self.planner.visibility(self.identity, self.session.source, self.snapshot, self.policy.policy,
                                           self.policy.grants).tables

    def dialect_of(self, target: str) -> str:
        return self.planner.backends[target].dialect

    def _require_visible(self, name: TableName, message: str) -> None:
        if name.is_metadata:
            return
        visible = self.planner.visibility(self.identity, self.session.source, self.snapshot, self.policy.policy,
                                           self.policy.grants)
        if name not in visible.tables:
            raise PermissionDenied(message)

    def _prepared_text(self, name: str) -> str:
        text = self.session.prepared_statements.get(name)
        if text is None:
            raise NotFound(f"Prepared statement not found: {name}")
        return text

    def session_change(self, statement: st.Statement) -> Plan:
        session = self.session
        snapshot = self.snapshot
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
            return Plan("use", update_type="USE",
                        change=SessionChange(set_catalog=catalog, set_schema=statement.schema))
        if isinstance(statement, st.SetSession):
            return Plan("set_session", update_type="SET SESSION",
                        change=SessionChange(set_properties={statement.name: statement.value}))
        if isinstance(statement, st.ResetSession):
            return Plan("reset_session", update_type="RESET SESSION",
                        change=SessionChange(reset_properties=[statement.name]))
        if isinstance(statement, st.Prepare):
            return Plan("prepare", update_type="PREPARE",
                        change=SessionChange(added_prepared={statement.name: statement.sql}))
        if isinstance(statement, st.Deallocate):
            self._prepared_text(statement.name)
            return Plan("deallocate", update_type="DEALLOCATE",
                        change=SessionChange(deallocated_prepared=[statement.name]))
        if isinstance(statement, st.StartTransaction):
            if not statement.read_only:
                raise NotSupported("the gateway is read-only: start transactions with READ ONLY",
                                   error_name="READ_ONLY_VIOLATION")
            return Plan("transaction", update_type="START TRANSACTION",
                        change=SessionChange(started_transaction_id=str(uuid.uuid4())))
        if isinstance(statement, st.EndTransaction):
            return Plan("transaction", update_type="COMMIT" if statement.commit else "ROLLBACK",
                        change=SessionChange(clear_transaction=True))
        raise InternalError(f"no plan for {type(statement).__name__}")


def gateway_plan(planned: Plan, mask_key: MaskKey) -> str:
    """EXPLAIN for an identity with row filters or masks: what the gateway decided and what it will run,
    never the engine's plan or statistics. It depends only on the statement, the identity's facts and the
    policy, so two statements that differ in a literal get plans that differ in that literal alone."""
    lines = ["Gateway plan (engine plans and statistics are not shown where row filters or column masks apply)",
             f"target: {planned.target}",
             *(f"table: {table}" for table in planned.tables),
             *(f"rule: {rule}" for rule in planned.rules),
             f"policy version: {(planned.policy_version or '')[:12]}"]
    if planned.sql is not None:
        lines.append(f"sql: {mask_key.display(planned.sql)}")
    return "\n".join(lines)


def kill_query(call: st.Call) -> KillQuery:
    """The only procedure the gateway knows, with Trino's argument names (query_id, message)."""
    if call.procedure != ("system", "runtime", "kill_query"):
        raise NotFound(f"Procedure not registered: {'.'.join(call.procedure)}", error_name="PROCEDURE_NOT_FOUND")
    names = ("query_id", "message")
    values: dict[str, str] = {}
    for position, (name, value) in enumerate(call.arguments):
        key = name if name is not None else (names[position] if position < len(names) else "")
        if key not in names or key in values:
            raise UserError(f"Invalid argument {name or position + 1} for procedure kill_query "
                            f"(arguments: query_id, message)", error_name="INVALID_PROCEDURE_ARGUMENT")
        values[key] = value
    if "query_id" not in values:
        raise UserError("Required procedure argument 'query_id' is missing",
                        error_name="INVALID_PROCEDURE_ARGUMENT")
    return KillQuery(values["query_id"], values.get("message"))


def describe_output_rows(columns: tuple[Column, ...]) -> tuple[tuple[Column, ...], tuple[Row, ...]]:
    """DESCRIBE OUTPUT's answer for a query with `columns`."""
    names = ("Column Name", "Catalog", "Schema", "Table", "Type", "Type Size", "Aliased")
    kinds = {"Type Size": BIGINT, "Aliased": BOOLEAN}
    return (tuple(Column(n, kinds.get(n, VARCHAR)) for n in names),
            tuple((c.name, "", "", "", c.type.display(), 0, False) for c in columns))


def _show_session(session: Session) -> Plan:
    columns = tuple(Column(name, VARCHAR) for name in ("Name", "Value", "Default", "Type", "Description"))
    rows = tuple((name, value, "", "varchar", "set by the client")
                 for name, value in sorted(session.properties.items()))
    return Plan("show", columns=columns, rows=rows)
