"""Lineage events are facts of the plan, for any SELECT over the demo tables (gateway/lineage/facets.py,
columns.py): built with the real planner, the real policies and the real event builder, no transport.

- the input datasets are exactly the tables the planner resolved, named per the naming spec;
- column lineage (direct and dataset-level) never names a table the statement does not read, nor a column
  that table does not have;
- an output column made from a column masked for the caller is marked `masking`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openlineage.client.serde import Serde

from gateway.backends.duckdb import DuckDBBackend
from gateway.backends.settings import BackendSettings
from gateway.backends.snowflake_settings import SnowflakeSettings
from gateway.backends.trino_settings import TrinoSettings
from gateway.catalog import CatalogSnapshot
from gateway.errors import GatewayError, QueryCanceled, UserError
from gateway.identity import Identity
from gateway.lineage.columns import column_lineage, resolved_statement
from gateway.lineage.emitter import build_transport
from gateway.lineage.facets import Facts, emits, masked_columns, run_events
from gateway.lineage.naming import DatasetNames
from gateway.lineage.settings import LineageSettings
from gateway.mask_key import MaskKey
from gateway.metadata import MetadataTables, build_metadata
from gateway.metrics import Metrics
from gateway.planner import Plan, Planner, PolicyContext
from gateway.policy.load import load_policies
from gateway.query_outcome import QueryOutcome
from gateway.relations import ExecutionStats
from gateway.session import Session
from gateway.sql.rewrite import SecureViews

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")
GATEWAY = "trino://127.0.0.1:8080"


@dataclass
class Rig:
    metadata: MetadataTables
    planner: Planner
    policy: PolicyContext
    users: dict[str, Identity]
    names: DatasetNames
    columns: dict[str, list[str]]  # table -> its columns

    @property
    def snapshot(self) -> CatalogSnapshot:
        return self.metadata.snapshot


@pytest.fixture(scope="module")
def rig(demo_database: Path) -> Iterator[Rig]:
    backend = DuckDBBackend(name="demo", path=demo_database)

    async def tables() -> object:
        await backend.start()
        return await backend.tables()

    metadata = build_metadata({"demo": asyncio.run(tables())}, workers=1)  # type: ignore[dict-item]
    planner = Planner(backends={"demo": backend}, default_catalog="demo", version="test", metrics=Metrics(),
                      mask_key=MaskKey.generate())
    dev_users = yaml.safe_load((ROOT / "policies" / "dev_users.yaml").read_text())["users"]
    users = {name: Identity.create(name, groups=facts.get("groups", []), attributes=facts.get("attributes", {}),
                                   cost_center=facts.get("cost_center"))
             for name, facts in dev_users.items() if name in ("alice", "admin", "sam")}
    types = metadata.snapshot.column_types()["demo"]["tpch"]
    names = DatasetNames([BackendSettings(name="demo", type="duckdb", path=demo_database, schema="tpch")],
                         gateway_namespace=GATEWAY)
    yield Rig(metadata, planner, PolicyContext(load_policies(ROOT / "policies"), SecureViews()), users, names,
              {t: list(types[t]) for t in TABLES})
    metadata.engine.close()
    asyncio.run(backend.close())


@st.composite
def selects(draw: st.DrawFn, columns: dict[str, list[str]]) -> str:
    """A SELECT over 1-3 demo tables: joins, plain / computed / aggregated projections, a filter, sometimes
    a CTE or a scalar subquery over another table."""
    tables = draw(st.lists(st.sampled_from(TABLES), min_size=1, max_size=3))
    aliases = [f"t{i}" for i in range(len(tables))]

    def column() -> str:
        i = draw(st.integers(0, len(tables) - 1))
        return f"{aliases[i]}.{draw(st.sampled_from(columns[tables[i]]))}"

    source = f"{tables[0]} {aliases[0]}"
    for i in range(1, len(tables)):
        left = f"{aliases[draw(st.integers(0, i - 1))]}"
        left_table = tables[aliases.index(left)]
        source += (f" JOIN {tables[i]} {aliases[i]} ON {left}.{draw(st.sampled_from(columns[left_table]))} = "
                   f"{aliases[i]}.{draw(st.sampled_from(columns[tables[i]]))}")
    aggregate = draw(st.booleans())
    plain: list[str] = []
    projections: list[str] = []
    for n in range(draw(st.integers(1, 4))):
        shape = draw(st.sampled_from(["plain", "computed", "count"] + (["max"] if aggregate else [])))
        if shape == "count":
            projections.append(f"count(*) AS c{n}")
        elif shape == "max":
            projections.append(f"max({column()}) AS m{n}")
        elif shape == "computed":
            text = f"upper(CAST({column()} AS varchar))"
            projections.append(f"{text} AS u{n}")
            plain.append(text)
        else:
            col = column()
            projections.append(col)
            plain.append(col)
    if draw(st.booleans()):
        other = draw(st.sampled_from(TABLES))
        projections.append(f"(SELECT count(*) FROM {other} WHERE {draw(st.sampled_from(columns[other]))} "
                           f"IS NOT NULL) AS sub")
    sql = f"SELECT {', '.join(projections)} FROM {source}"
    if draw(st.booleans()):
        sql += f" WHERE {column()} IS NOT NULL"
    if (aggregate or any(p.startswith("count") for p in projections)) and plain:
        sql += f" GROUP BY {', '.join(plain)}"
    if draw(st.booleans()):
        sql = f"WITH q AS ({sql}) SELECT * FROM q"
    return sql


def outcome_of(plan: Plan, sql: str, session: Session, identity: Identity) -> QueryOutcome:
    return QueryOutcome(
        query_id="20261202_000000_00001_lin00", received_at="2026-12-02T00:00:00.000Z", sql=sql, session=session,
        principal=identity, identity=identity, statement_kind=plan.statement_kind, state="FINISHED", error=None,
        stats=ExecutionStats(), elapsed_seconds=0.1, queued_seconds=0.0, backend=plan.target, dialect="duckdb",
        planned_sql=None, tables=[str(t) for t in plan.tables], columns_read=dict(plan.columns_read),
        policy_version=plan.policy_version, rules=list(plan.rules), cache_hit=False, resource_group=None,
        queue_wait_seconds=None)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), user=st.sampled_from(["alice", "admin", "sam"]))
def test_events_name_exactly_the_planned_tables_and_their_columns(rig: Rig, data: st.DataObject,
                                                                  user: str) -> None:
    sql = data.draw(selects(rig.columns))
    session = Session(user=user, catalog="demo", schema="tpch", source="hypothesis")
    identity = rig.users[user]
    plan = rig.planner.plan(sql, session=session, identity=identity, snapshot=rig.snapshot, policy=rig.policy)
    outcome = outcome_of(plan, sql, session, identity)
    statement = resolved_statement(sql, session=session, snapshot=rig.snapshot, default_catalog="demo")
    assert statement is not None
    masked = masked_columns(outcome.rules)
    lineage = column_lineage(statement[0], schema=rig.snapshot.column_types(), dialect="trino",
                             tables=outcome.tables or (), masked=masked)
    assert lineage is not None, sql
    facts = Facts(finished_at=datetime.now(UTC), cost_center=identity.cost_center, version="test", sql=sql,
                  shown_sql=sql, lineage=lineage, column_types={})
    start, end = run_events(outcome, facts, settings=LineageSettings(enabled=True), names=rig.names,
                            gateway_namespace=GATEWAY)
    event = Serde.to_dict(end)
    Serde.to_json(start)  # both serialize

    planned = {rig.names.of(str(t)) for t in plan.tables}
    assert {(d["namespace"], d["name"]) for d in event["inputs"]} == planned
    by_name = {rig.names.of(f"demo.tpch.{t}")[1]: t for t in TABLES}
    [output] = event["outputs"]
    facet = output["facets"]["columnLineage"]
    named = [f for field in facet["fields"].values() for f in field["inputFields"]] + facet.get("dataset", [])
    for source in named:
        assert (source["namespace"], source["name"]) in planned, (sql, source)
        assert source["field"] in rig.columns[by_name[source["name"]]], (sql, source)
    for column in lineage.outputs:
        for source in column.inputs:
            assert source.masking == ((source.table, source.column) in masked)


@pytest.mark.parametrize(("error", "state"), [(None, "COMPLETE"), (QueryCanceled("Query was canceled"), "ABORT"),
                                              (UserError("Cannot cast 'ALGERIA' to integer"), "FAIL")])
def test_terminal_event_follows_how_the_statement_ended(rig: Rig, error: GatewayError | None, state: str) -> None:
    sql = "SELECT c_name FROM customer"
    session = Session(user="alice", catalog="demo", schema="tpch", source="x")
    identity = rig.users["alice"]
    plan = rig.planner.plan(sql, session=session, identity=identity, snapshot=rig.snapshot, policy=rig.policy)
    outcome = dataclasses.replace(outcome_of(plan, sql, session, identity), error=error,
                                  state="FINISHED" if error is None else "FAILED")
    facts = Facts(finished_at=datetime.now(UTC), cost_center=None, version="test", sql=sql, shown_sql=sql,
                  lineage=None, column_types={})
    start, end = run_events(outcome, facts, settings=LineageSettings(enabled=True), names=rig.names,
                            gateway_namespace=GATEWAY)
    event = Serde.to_dict(end)
    assert (Serde.to_dict(start)["eventType"], event["eventType"]) == ("START", state)
    assert ("errorMessage" in event["run"]["facets"]) == (state == "FAIL")
    if state == "FAIL":  # the value quoted in the message is redacted, as the SQL's literals are
        assert event["run"]["facets"]["errorMessage"]["message"] == "GENERIC_USER_ERROR: Cannot cast '…' to integer"
    governance = event["run"]["facets"]["queryGateway"]
    assert governance["masksApplied"] and governance["rowFiltersApplied"]  # alice's customer: c_name masked


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)


@given(host=NAMES, port=st.integers(1, 65535), database=NAMES, password=st.from_regex(r"[0-9]{2}!X[0-9a-z]{4}",
                                                                                      fullmatch=True),
       schema=NAMES, table=NAMES)
def test_dataset_names_follow_the_naming_spec_and_never_carry_a_secret(
        host: str, port: int, database: str, password: str, schema: str, table: str) -> None:
    backends = [
        BackendSettings(name="pg", type="postgres", dsn=f"postgresql://reader:{password}@{host}:{port}/{database}"),
        BackendSettings(name="tr", type="trino", trino=TrinoSettings(url=f"https://{host}:{port}", catalog=database)),
        BackendSettings(name="sf", type="snowflake",
                        snowflake=SnowflakeSettings(account=f"ORG-{host}", user="u", database=database.upper())),
        BackendSettings(name="dk", type="duckdb", path=Path(f"/srv/{database}.duckdb")),
    ]
    names = DatasetNames(backends, gateway_namespace=GATEWAY)
    assert names.of(f"pg.{schema}.{table}") == (f"postgres://{host}:{port}", f"{database}.{schema}.{table}")
    assert names.of(f"tr.{schema}.{table}") == (f"trino://{host}:{port}", f"{database}.{schema}.{table}")
    assert names.of(f"sf.{schema}.{table}") == (f"snowflake://org-{host}", f"{database.upper()}.{schema}.{table}")
    assert names.of(f"dk.{schema}.{table}") == (f"duckdb:///srv/{database}.duckdb", f"{database}.{schema}.{table}")
    assert names.of(f"gateway.audit.{table}") == (GATEWAY, f"gateway.audit.{table}")
    assert all(password not in "".join(names.of(f"{catalog}.{schema}.{table}")) for catalog in ("pg", "tr", "sf"))


def test_console_transport_logs_each_event(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    sql = "SELECT n_name FROM nation"
    session = Session(user="admin", catalog="demo", schema="tpch", source="x")
    identity = rig.users["admin"]
    plan = rig.planner.plan(sql, session=session, identity=identity, snapshot=rig.snapshot, policy=rig.policy)
    facts = Facts(finished_at=datetime.now(UTC), cost_center=None, version="test", sql=sql, shown_sql=sql,
                  lineage=None, column_types={})
    transport = build_transport(LineageSettings(enabled=True, transport="console"))
    with caplog.at_level(logging.INFO, logger="openlineage.client.transport.console"):
        for event in run_events(outcome_of(plan, sql, session, identity), facts,
                                settings=LineageSettings(enabled=True), names=rig.names, gateway_namespace=GATEWAY):
            transport.emit(event)
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "openlineage.client.transport.console"]
    assert [e["eventType"] for e in logged] == ["START", "COMPLETE"]
    assert logged[1]["inputs"][0]["name"] == "demo.tpch.nation"


def test_only_statements_that_reached_a_backend_are_runs(rig: Rig) -> None:
    session = Session(user="admin", catalog="demo", schema="tpch", source="x")
    identity = rig.users["admin"]

    def outcome(sql: str) -> QueryOutcome:
        plan = rig.planner.plan(sql, session=session, identity=identity, snapshot=rig.snapshot, policy=rig.policy)
        return outcome_of(plan, sql, session, identity)

    ran = outcome("SELECT n_name FROM nation")
    assert emits(ran)
    assert not emits(dataclasses.replace(ran, backend=None))  # refused at admission, cancelled while queued
    assert emits(dataclasses.replace(ran, backend=None, cache_hit=True))
    assert not emits(outcome("SELECT 1"))
    assert not emits(outcome("SELECT table_name FROM information_schema.tables"))
    assert not emits(dataclasses.replace(outcome("SHOW TABLES"), backend="demo"))
