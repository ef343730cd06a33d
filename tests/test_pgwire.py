"""The PostgreSQL wire frontend with real clients (psql, psycopg 3, asyncpg) against a real gateway process in
dev identity mode: queries, types in text and binary, parameters, masks and filters identical to the Trino
HTTP frontend, transactions, cursors and PortalSuspended, errors with SQLSTATEs, cancel, and one audit record
per statement of a multi-statement query."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
import trino

from tests.pgwire_support import PgGateway, audited_gateway
from tests.test_audit_gateway import stored


@pytest.fixture(scope="module")
def pg(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgGateway, Path]]:
    yield from audited_gateway(demo_database, tmp_path_factory, "pgwire")


@pytest.fixture
def gw(pg: tuple[PgGateway, Path]) -> PgGateway:
    return pg[0]


def psql(gw: PgGateway, *args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", gw.dsn(user), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args],
                          capture_output=True, text=True, timeout=60)


def http_rows(gw: PgGateway, sql: str, user: str = "alice") -> list[list[Any]]:
    cursor = trino.dbapi.connect(host=gw.host, port=gw.process.port, user=user, catalog="demo",
                                 schema="tpch").cursor()
    cursor.execute(sql)
    return [list(row) for row in cursor.fetchall()]


def test_psql_runs_queries_variables_and_reports_sqlstates(gw: PgGateway) -> None:
    done = psql(gw, "-c", "SELECT n_name FROM nation WHERE n_nationkey = 2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "BRAZIL"
    script = "\\set key 3\nSELECT n_name FROM nation WHERE n_nationkey = :key;\nSHOW search_path;\n"
    done = subprocess.run(["psql", gw.dsn(), "-X", "-A", "-t"], input=script, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["CANADA", "tpch"], done.stderr
    failed = psql(gw, "-v", "VERBOSITY=verbose", "-c", "SELECT * FROM no_such_table")
    assert failed.returncode != 0 and "42P01" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr


def test_masks_and_filters_are_those_of_the_http_frontend(gw: PgGateway) -> None:
    sql = "SELECT c_custkey, c_name, c_phone, c_nationkey FROM customer ORDER BY c_custkey LIMIT 20"
    for user in ("alice", "bob"):
        with psycopg.connect(gw.dsn(user)) as connection:
            over_pgwire = [list(row) for row in connection.execute(sql).fetchall()]
        assert over_pgwire == http_rows(gw, sql, user)
        assert over_pgwire  # the test compares something
    with psycopg.connect(gw.dsn("alice")) as connection:
        nations = {row[0] for row in connection.execute("SELECT DISTINCT c_nationkey FROM customer").fetchall()}
    assert nations <= {1, 2, 3}  # alice's row filter


VALUES_SQL = ("SELECT CAST(7 AS SMALLINT) AS i2, 42 AS i4, CAST(9000000000 AS BIGINT) AS i8, CAST(1.5 AS REAL) AS f4, "
              "CAST(2.25 AS DOUBLE PRECISION) AS f8, true AS b, CAST('12345.678' AS NUMERIC(12,3)) AS n, "
              "DATE '2024-02-29' AS d, TIMESTAMP '2024-02-29 13:14:15.123456' AS ts, 'héllo' AS t, "
              "CAST('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' AS UUID) AS u")
EXPECTED = [7, 42, 9000000000, 1.5, 2.25, True, decimal.Decimal("12345.678"), dt.date(2024, 2, 29),
            dt.datetime(2024, 2, 29, 13, 14, 15, 123456), "héllo",
            uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]


@pytest.mark.parametrize("binary", [False, True])
def test_types_round_trip_in_text_and_binary(gw: PgGateway, binary: bool) -> None:
    with psycopg.connect(gw.dsn()) as connection:
        row = connection.execute(VALUES_SQL, binary=binary).fetchone()
    assert row is not None
    assert list(row) == EXPECTED


def test_asyncpg_types_parameters_and_cursor_with_portal_suspended(gw: PgGateway) -> None:
    async def scenario() -> None:
        connection = await asyncpg.connect(host=gw.host, port=gw.pg_port, user="alice", database="demo")
        try:
            row = await connection.fetchrow(VALUES_SQL)
            assert row is not None and list(row.values()) == EXPECTED
            name = await connection.fetchval("SELECT n_name FROM nation WHERE n_nationkey = $1::int", 6)
            assert name == "FRANCE"
            assert await connection.fetchval("SELECT $1::text || 'x'", "it's; DROP") == "it's; DROPx"
            async with connection.transaction():
                keys = [r[0] async for r in connection.cursor("SELECT n_nationkey FROM nation ORDER BY 1",
                                                               prefetch=4)]  # Execute maxRows=4: suspended 6x
            assert keys == list(range(25))
        finally:
            await connection.close()

    asyncio.run(scenario())


def test_parameters_are_bound_as_values_never_as_sql(gw: PgGateway) -> None:
    hostile = ["1 OR 1=1", "'; SELECT 1; --", "$1", "\\", "x' OR 'a'='a"]
    with psycopg.connect(gw.dsn()) as connection:
        for value in hostile:
            got = connection.execute("SELECT n_name FROM nation WHERE n_name = %s", (value,)).fetchall()
            assert got == []
            assert connection.execute("SELECT %s::text", (value,)).fetchone() == (value,)


def test_transaction_status_and_aborted_block(gw: PgGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as connection:
        status = psycopg.pq.TransactionStatus
        assert connection.info.transaction_status == status.IDLE
        connection.execute("BEGIN READ ONLY")
        assert connection.info.transaction_status == status.INTRANS
        with pytest.raises(psycopg.errors.UndefinedTable):
            connection.execute("SELECT * FROM no_such_table")
        assert connection.info.transaction_status == status.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            connection.execute("SELECT 1")
        connection.execute("ROLLBACK")
        assert connection.info.transaction_status == status.IDLE
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_server_side_cursor_declare_fetch_close(gw: PgGateway) -> None:
    with psycopg.connect(gw.dsn()) as connection, connection.cursor(name="nations") as cursor:
        cursor.execute("SELECT n_nationkey FROM nation ORDER BY 1")
        assert cursor.fetchmany(3) == [(0,), (1,), (2,)]
        assert cursor.fetchmany(2) == [(3,), (4,)]
        assert len(cursor.fetchall()) == 20


def test_session_parameters_set_show_reset(gw: PgGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as connection:
        connection.execute("SET application_name = 'dashboard-7'")
        assert connection.info.parameter_status("application_name") == "dashboard-7"
        assert connection.execute("SHOW application_name").fetchone() == ("dashboard-7",)
        connection.execute("SET extra_float_digits = 3")
        connection.execute("SET search_path TO tpch")
        assert connection.execute("SELECT count(*) FROM region").fetchone() == (5,)
        connection.execute("RESET application_name")
        assert connection.execute("SHOW application_name").fetchone() == ("",)
        with pytest.raises(psycopg.errors.UndefinedObject):
            connection.execute("SHOW no_such_setting")
        assert connection.info.parameter_status("server_version").startswith("16.")  # type: ignore[union-attr]
        assert connection.info.server_version >= 140000


def test_errors_carry_sqlstates_and_no_internals(gw: PgGateway) -> None:
    cases = {"SELEC 1": "42601", "SELECT * FROM no_such_table": "42P01", "SELECT no_such_column FROM nation": "42703",
             "DELETE FROM nation": "25006", "SELECT * FROM gateway.audit.queries": "42501"}
    with psycopg.connect(gw.dsn(), autocommit=True) as connection:
        for sql, sqlstate in cases.items():
            with pytest.raises(psycopg.Error) as caught:
                connection.execute(sql)
            assert caught.value.sqlstate == sqlstate, (sql, caught.value)
            assert "Traceback" not in str(caught.value) and "duckdb" not in str(caught.value).lower()
            assert connection.execute("SELECT 1").fetchone() == (1,)  # the connection stays usable


def test_multi_statement_query_is_audited_per_statement(pg: tuple[PgGateway, Path]) -> None:
    gw, db = pg
    source = f"multi-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["psql", gw.dsn(application_name=source), "-X", "-A", "-t", "-c",
                           "SELECT 1; SELECT n_name FROM nation WHERE n_nationkey = 1; SELECT * FROM nope"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["1", "ARGENTINA"] and "42P01" not in done.stdout
    records = stored(db, source, expect=3)
    assert [r["sql"] for r in records] == ["SELECT 1", " SELECT n_name FROM nation WHERE n_nationkey = 1",
                                           " SELECT * FROM nope"]
    assert [r["error_name"] for r in records] == [None, None, "TABLE_NOT_FOUND"]
    assert {r["frontend"] for r in records} == {"pgwire"}


def test_empty_query(gw: PgGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as connection:
        cursor = connection.execute("  ;  -- nothing\n")
        assert cursor.pgresult is not None
        assert cursor.pgresult.status == psycopg.pq.ExecStatus.EMPTY_QUERY


@pytest.mark.slow
def test_cancel_request_stops_the_backend_query(gw: PgGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as connection:
        timer = threading.Timer(1.0, connection.cancel)
        timer.start()
        began = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            connection.execute("SELECT count(*) FROM lineitem a, lineitem b, lineitem c")
        assert time.monotonic() - began < 20
        timer.join()
        assert connection.execute("SELECT 1").fetchone() == (1,)
    assert gw.process.metric("gateway_pgwire_cancel_requests_total", 'outcome="cancelled"') >= 1


def test_wrong_cancel_key_is_ignored(gw: PgGateway) -> None:
    with psycopg.connect(gw.dsn(), autocommit=True) as connection:
        before = gw.process.metric("gateway_pgwire_cancel_requests_total", 'outcome="ignored"')
        import socket
        import struct

        with socket.create_connection((gw.host, gw.pg_port), timeout=5) as raw:
            raw.sendall(struct.pack("!iiii", 16, 80877102, connection.info.backend_pid, 12345))
            assert raw.recv(10) == b""  # closed without an answer
        assert connection.execute("SELECT 2").fetchone() == (2,)
    assert gw.process.metric("gateway_pgwire_cancel_requests_total", 'outcome="ignored"') == before + 1


def _metrics(gw: PgGateway) -> str:
    import httpx

    return httpx.get(f"{gw.process.url}/metrics", timeout=5).text


def test_unknown_database_is_refused_clearly(gw: PgGateway) -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(gw.dsn(dbname="nosuchdb"))
    assert "does not exist" in str(caught.value) and "demo" in str(caught.value)


PGJDBC = Path("/usr/share/java/postgresql.jar")
PROBE = Path(__file__).parent / "pgjdbc" / "PgwireProbe.java"


def test_pgjdbc_queries_prepared_binary_fetch_size_and_errors(gw: PgGateway, request: pytest.FixtureRequest) -> None:
    if not PGJDBC.exists():
        pytest.fail(f"{PGJDBC} is missing: apt-get install libpostgresql-jdbc-java (.ci/run does)")
    classes = Path(request.config.cache.mkdir("pgjdbc-probe"))
    compiled = classes / "PgwireProbe.class"
    if not compiled.exists() or compiled.stat().st_mtime < PROBE.stat().st_mtime:
        subprocess.run(["javac", "-cp", str(PGJDBC), "-d", str(classes), str(PROBE)], check=True, timeout=120)
    url = f"jdbc:postgresql://{gw.host}:{gw.pg_port}/demo?user=alice&prepareThreshold=1"
    done = subprocess.run(["java", "-cp", f"{PGJDBC}:{classes}", "PgwireProbe", url], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("version=16.")
    assert lines[1:4] == ["row=ALGERIA|0", "row=ARGENTINA|1", "row=BRAZIL|2"]
    assert lines[4:7] == [f"typed={name}|{key}|1.50|2024-02-29|2024-02-29 13:14:15.0|true|2.25"
                          for name, key in (("ETHIOPIA", 5), ("FRANCE", 6), ("GERMANY", 7))]
    masked = lines[7].removeprefix("masked=")
    assert masked == http_rows(gw, "SELECT c_name FROM customer ORDER BY c_custkey LIMIT 1")[0][0]
    assert lines[8:] == ["fetched=25", "sqlstate=42P01"]


@pytest.mark.slow
def test_sigterm_drains_then_cancels_running_statements(demo_database: Path,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import demo_config

    gateway = PgGateway(tmp_path_factory.mktemp("pgwire-drain"), demo_config(demo_database))
    outcome: dict[str, Any] = {}

    def long_query() -> None:
        try:
            with psycopg.connect(gateway.dsn()) as connection:
                connection.execute("SELECT count(*) FROM lineitem a, lineitem b, lineitem c")
        except psycopg.Error as error:
            outcome["sqlstate"] = error.sqlstate
            outcome["message"] = str(error)

    try:
        worker = threading.Thread(target=long_query)
        worker.start()
        time.sleep(1.0)
        gateway.process.process.send_signal(15)
        time.sleep(0.3)
        with pytest.raises(psycopg.OperationalError, match="shutting down"):  # draining: no new sessions
            psycopg.connect(gateway.dsn())
        worker.join(30)
        assert outcome.get("sqlstate") == "57P01", outcome
        assert gateway.process.process.wait(30) in (0, -15)  # uvicorn re-raises the signal it drained on
        assert "Traceback" not in gateway.process.log()
    finally:
        gateway.stop()
