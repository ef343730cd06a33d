"""Describe that never executes: each backend's `describe` answers the result columns of a query whose
execution would fail on its first row (a cast or a division that raises), so an answer proves nothing ran.
Over pgwire, Describe of a prepared statement is planned and authorized as execution is (masks change the
described types, a denied statement fails with 42501) and audited as a describe; a Hypothesis property checks
that described names and type OIDs equal those of the executed statement for generated SELECTs."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import types as t
from gateway.backends.base import Backend
from gateway.backends.credentials import SecretSpec, secret_source
from gateway.backends.duckdb import DuckDBBackend
from gateway.backends.postgres import PostgresBackend
from gateway.backends.snowflake import SnowflakeBackend
from gateway.backends.snowflake_settings import SnowflakeSettings
from gateway.backends.sqlite import SQLiteBackend
from gateway.backends.trino import TrinoBackend
from gateway.backends.trino_settings import TrinoSettings
from gateway.errors import GatewayError
from gateway.relations import Column
from tests.conftest import GatewayProcess
from tests.fakesnow_warehouse import FAKESNOW_PYTHON, FakeSnow
from tests.pgwire_support import PgGateway, audited_gateway
from tests.test_audit_gateway import stored

# -- each backend, in process ----------------------------------------------------------------------------------


async def described_and_executed(backend: Backend, sql: str) -> tuple[tuple[Column, ...], GatewayError | None]:
    """What `describe` says of `sql`, and the error its execution raises (None if it ran)."""
    await backend.start()
    try:
        columns = await backend.describe(sql)
        execution = backend.execution(sql)
        try:
            await execution.start()
            while await execution.fetch(100) is not None:
                pass
        except GatewayError as error:
            return columns, error
        return columns, None
    finally:
        await backend.close()


def test_duckdb_describes_a_query_whose_execution_fails(demo_database: Path) -> None:
    backend = DuckDBBackend(name="demo", path=demo_database)
    sql = "SELECT CAST(n_name AS INTEGER) AS broken, n_nationkey, round(n_nationkey / 3, 1) FROM tpch.nation"
    columns, error = asyncio.run(described_and_executed(backend, sql))
    assert [c.name for c in columns] == ["broken", "n_nationkey", "round((n_nationkey / 3), 1)"]
    assert [c.type for c in columns] == [t.INTEGER, t.BIGINT, t.DOUBLE]
    assert error is not None and error.error_name == "INVALID_CAST_ARGUMENT"


def test_postgres_describes_from_a_prepared_statement_without_running_it() -> None:
    backend = PostgresBackend(name="pg", dsn="postgresql://postgres@127.0.0.1:5432/postgres")
    sql = "SELECT 1 / (n - n) AS broken, n::text AS label, n::numeric(10, 2) AS amount FROM generate_series(1, 3) n"
    columns, error = asyncio.run(described_and_executed(backend, sql))
    assert [(c.name, c.type.name) for c in columns] == [("broken", "integer"), ("label", "varchar"),
                                                       ("amount", "decimal")]
    assert error is not None and "division by zero" in error.message


def test_postgres_describe_reports_errors_and_keeps_the_pool_usable() -> None:
    async def scenario() -> None:
        backend = PostgresBackend(name="pg", dsn="postgresql://postgres@127.0.0.1:5432/postgres", pool_size=1)
        try:
            for _ in range(3):  # pool_size 1: a connection not given back would hang the second round
                with pytest.raises(GatewayError) as caught:
                    await backend.describe("SELECT no_such_column FROM generate_series(1, 2)")
                assert caught.value.error_name == "COLUMN_NOT_FOUND"
                assert [c.name for c in await backend.describe("SELECT 1 AS one")] == ["one"]
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_sqlite_describes_with_an_empty_run(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (doc TEXT)")
        connection.execute("INSERT INTO t VALUES ('not json')")
    backend = SQLiteBackend(name="lite", path=path, schema="lite")
    columns, error = asyncio.run(described_and_executed(backend, "SELECT json(doc) AS parsed FROM lite.t"))
    assert [c.name for c in columns] == ["parsed"]
    assert error is not None and "malformed JSON" in error.message


def test_trino_describes_with_an_empty_run_through_the_chained_gateway(gateway: GatewayProcess) -> None:
    """A chained gateway cannot prepare (its DESCRIBE OUTPUT runs the statement): the fallback wraps the query
    in LIMIT 0, which the inner DuckDB answers from its plan."""
    settings = TrinoSettings(url=gateway.url, user="admin", catalog="demo")
    backend = TrinoBackend(name="demo", settings=settings, schema="tpch", schemas=["tpch"])
    sql = 'SELECT CAST(n_name AS INTEGER) AS broken, n_name FROM "demo"."tpch"."nation"'
    columns, error = asyncio.run(described_and_executed(backend, sql))
    assert [(c.name, c.type) for c in columns] == [("broken", t.INTEGER), ("n_name", t.VARCHAR)]
    assert error is not None and error.error_name == "INVALID_CAST_ARGUMENT"


@pytest.mark.skipif(not FAKESNOW_PYTHON.exists(), reason="fakesnow is installed by `make test` into .venv-fakesnow")
def test_snowflake_describes_with_describe_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSnow(tmp_path)
    try:
        fake.sql("CREATE SCHEMA KINDS", "CREATE TABLE KINDS.T (LABEL VARCHAR, AMOUNT NUMBER(12, 3))",
                 "INSERT INTO KINDS.T VALUES ('x', 1.5)")
        monkeypatch.setenv("GW_TEST_DESCRIBE_PASSWORD", "x")
        settings = SnowflakeSettings(account="gwtest", user="gateway", database=fake.database, host="127.0.0.1",
                                     port=fake.port, protocol="http")
        backend = SnowflakeBackend(name="sf", settings=settings,
                                   password=secret_source(SecretSpec(kind="env", env="GW_TEST_DESCRIBE_PASSWORD")))
        sql = "SELECT CAST(LABEL AS INTEGER) AS BROKEN, AMOUNT FROM KINDS.T"
        columns, error = asyncio.run(described_and_executed(backend, sql))
        assert [(c.name, c.type) for c in columns] == [("broken", t.decimal(38, 0)), ("amount", t.decimal(12, 3))]
        assert error is not None and error.error_name == "INVALID_CAST_ARGUMENT", error
    finally:
        fake.stop()


# -- over pgwire -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgGateway, Path]]:
    yield from audited_gateway(demo_database, tmp_path_factory, "pgwire-describe")


def describe_prepared(connection: psycopg.Connection[Any], sql: str) -> list[tuple[str, int]]:
    """Parse + Describe(statement) + Sync: the statement's columns as (name, type OID)."""
    name = f"s{uuid.uuid4().hex[:8]}".encode()
    pgconn = connection.pgconn
    prepared = pgconn.prepare(name, sql.encode())
    assert prepared.status == psycopg.pq.ExecStatus.COMMAND_OK, prepared.error_message
    described = pgconn.describe_prepared(name)
    assert described.status == psycopg.pq.ExecStatus.COMMAND_OK, described.error_message
    return [(described.fname(i).decode(), described.ftype(i)) for i in range(described.nfields)]


def executed(connection: psycopg.Connection[Any], sql: str) -> list[tuple[str, int]]:
    cursor = connection.execute(sql)
    return [(c.name, c.type_code) for c in cursor.description or []]


def as_alice(gw: PgGateway, source: str, scenario: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
    """`scenario` on an asyncpg connection of alice's, with application_name (the audit's source) `source`."""
    async def run() -> None:
        connection = await asyncpg.connect(host=gw.host, port=gw.pg_port, user="alice", database="demo",
                                           server_settings={"application_name": source})
        try:
            await scenario(connection)
        finally:
            await connection.close()

    asyncio.run(run())


def test_describe_answers_a_statement_whose_execution_would_fail(pg: tuple[PgGateway, Path]) -> None:
    gw, db = pg
    source = f"describe-{uuid.uuid4().hex[:8]}"

    async def scenario(connection: asyncpg.Connection) -> None:
        statement = await connection.prepare("SELECT CAST(n_name AS INTEGER) AS broken, n_name FROM nation")
        assert [(a.name, a.type.name) for a in statement.get_attributes()] == [("broken", "int4"),
                                                                               ("n_name", "varchar")]
        with pytest.raises(asyncpg.PostgresError):
            await statement.fetch()

    as_alice(gw, source, scenario)
    records = stored(db, source, expect=2)
    kinds = [(r["statement_type"], r["decision"], r["backend"], r["row_count"]) for r in records]
    assert kinds[0] == ("describe", "success", None, 0), records[0]
    assert records[0]["tables_read"] and "nation" in records[0]["tables_read"]
    assert kinds[1][0] == "select" and records[1]["error_name"] == "INVALID_CAST_ARGUMENT"


def test_a_denied_statement_fails_at_describe(pg: tuple[PgGateway, Path]) -> None:
    gw, db = pg
    source = f"denied-{uuid.uuid4().hex[:8]}"

    async def scenario(connection: asyncpg.Connection) -> None:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.prepare("SELECT * FROM gateway.audit.queries")
        assert await connection.fetchval("SELECT 1") == 1

    as_alice(gw, source, scenario)
    records = stored(db, source, expect=1)
    assert records[0]["statement_type"] == "describe" and records[0]["decision"] == "denied"


def test_masked_columns_are_described_as_the_rewritten_query_returns_them(pg: tuple[PgGateway, Path]) -> None:
    gw, _ = pg
    sql = "SELECT c_name, c_acctbal, c_phone FROM customer"
    for user in ("alice", "admin"):
        with psycopg.connect(gw.dsn(user), autocommit=True) as connection:
            assert describe_prepared(connection, sql) == executed(connection, sql + " LIMIT 1"), user


TABLE_COLUMNS = {
    "customer": ["c_custkey", "c_name", "c_address", "c_nationkey", "c_phone", "c_acctbal", "c_mktsegment"],
    "orders": ["o_orderkey", "o_custkey", "o_orderstatus", "o_totalprice", "o_orderdate", "o_clerk"],
    "nation": ["n_nationkey", "n_name", "n_regionkey", "n_comment"],
}
NUMERIC = {"c_custkey", "c_nationkey", "c_acctbal", "o_orderkey", "o_custkey", "o_totalprice", "n_nationkey",
           "n_regionkey"}


@st.composite
def select_statements(draw: st.DrawFn) -> str:
    table = draw(st.sampled_from(sorted(TABLE_COLUMNS)))
    columns = TABLE_COLUMNS[table]
    items = []
    for _ in range(draw(st.integers(1, 5))):
        column = draw(st.sampled_from(columns))
        shape = draw(st.sampled_from(["plain", "alias", "upper", "arith", "literal", "cast", "coalesce"]))
        if shape == "alias":
            items.append(f'{column} AS "{draw(st.sampled_from(["x", "Mixed Case", "y2"]))}"')
        elif shape == "upper":
            items.append(f"upper(CAST({column} AS TEXT))")
        elif shape == "arith":
            items.append(f"{column} + 1" if column in NUMERIC else f"length(CAST({column} AS TEXT))")
        elif shape == "literal":
            items.append(draw(st.sampled_from(["1", "'text'", "2.5", "true", "NULL::int", "DATE '2024-01-02'"])))
        elif shape == "cast":
            items.append(f"CAST({column} AS {draw(st.sampled_from(['TEXT', 'VARCHAR(30)']))})")
        elif shape == "coalesce":
            items.append(f"coalesce({column}, {column})")
        else:
            items.append(column)
    where = draw(st.sampled_from(["", f" WHERE {columns[0]} > 3", f" WHERE {columns[0]} IS NOT NULL"]))
    return f"SELECT {', '.join(items)} FROM {table}{where}"


@pytest.fixture(scope="module")
def sessions(pg: tuple[PgGateway, Path]) -> Iterator[dict[str, psycopg.Connection[Any]]]:
    connections = {user: psycopg.connect(pg[0].dsn(user), autocommit=True) for user in ("alice", "bob", "admin")}
    yield connections
    for connection in connections.values():
        connection.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=select_statements(), user=st.sampled_from(["alice", "bob", "admin"]))
def test_described_columns_equal_the_executed_columns(sessions: dict[str, psycopg.Connection[Any]], sql: str,
                                                      user: str) -> None:
    connection = sessions[user]
    assert describe_prepared(connection, sql) == executed(connection, sql + " LIMIT 2"), sql
