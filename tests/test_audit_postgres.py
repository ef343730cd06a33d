"""The PostgreSQL audit store against the real server on 127.0.0.1:5432: schema migrated by an owner role,
a gateway role with INSERT/SELECT only, UPDATE/DELETE refused, connection cuts mid-load with nothing lost
and order kept, tamper detection, and auditors querying through the trino client.

Each test module run creates its own database and roles and drops them at the end."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trino

from tests.conftest import GatewayProcess, demo_config
from tests.pg_warehouse import available, psql

PG = "postgresql://postgres@127.0.0.1:5432"


pytestmark = pytest.mark.skipif(not available(), reason="PostgreSQL on 127.0.0.1:5432 is required")


class Database:
    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.name = f"audit_test_{suffix}"
        self.role = f"gw_audit_{suffix}"
        psql(f"CREATE ROLE {self.role} LOGIN")
        psql(f"CREATE DATABASE {self.name}")
        psql(f"REVOKE CONNECT ON DATABASE {self.name} FROM PUBLIC; GRANT CONNECT ON DATABASE {self.name} TO "
             f"{self.role}")

    @property
    def gateway_url(self) -> str:
        return f"postgresql://{self.role}@127.0.0.1:5432/{self.name}"

    @property
    def admin_url(self) -> str:
        return f"{PG}/{self.name}"

    def sql(self, statement: str, user: str = "postgres") -> str:
        return psql(statement, self.name, user)

    def cut(self, *, refuse: bool) -> None:
        """Drop the gateway's connections (and with `refuse`, keep it from reconnecting)."""
        if refuse:
            psql(f"REVOKE CONNECT ON DATABASE {self.name} FROM {self.role}")
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}' "
             f"AND usename = '{self.role}'")

    def restore(self) -> None:
        psql(f"GRANT CONNECT ON DATABASE {self.name} TO {self.role}")

    def drop(self) -> None:
        psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        psql(f"DROP ROLE IF EXISTS {self.role}")


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    db = Database()
    yield db
    db.drop()


def pg_config(database_path: Path, workdir: Path, db: Database, **audit: Any) -> dict[str, Any]:
    return demo_config(database_path, audit={"store": db.gateway_url, "admin_store": db.admin_url,
                                             "spool_dir": str(workdir / "spool"), "flush_interval_seconds": 0.02,
                                             **audit})


@pytest.fixture(scope="module")
def pg_gateway(demo_database: Path, database: Database,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("pg-audit")
    process = GatewayProcess(workdir, pg_config(demo_database, workdir, database))
    yield process
    process.stop()


def count(db: Database, source: str) -> int:
    return int(db.sql(f"SELECT count(*) FROM audit.queries WHERE source = '{source}'"))


def wait_count(db: Database, source: str, expect: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (found := count(db, source)) < expect and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def run(gateway: GatewayProcess, sql: str, *, user: str = "alice", source: str) -> Any:
    cursor = trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo", schema="tpch",
                                 source=source).cursor()
    cursor.execute(sql)
    return cursor.fetchall()


def test_the_gateway_role_may_insert_and_select_only(pg_gateway: GatewayProcess, database: Database) -> None:
    run(pg_gateway, "SELECT count(*) FROM nation", source="worm")
    assert wait_count(database, "worm", 1) == 1
    for statement in ("UPDATE audit.queries SET user_name = 'x'", "DELETE FROM audit.queries",
                      "TRUNCATE audit.queries", "TRUNCATE audit.checkpoints"):
        with pytest.raises(RuntimeError, match="permission denied"):
            database.sql(statement, user=database.role)
        with pytest.raises(RuntimeError, match="append-only"):  # even the owner: the trigger refuses
            database.sql(statement)
    grants = database.sql(f"SELECT string_agg(DISTINCT privilege_type, ',' ORDER BY privilege_type) FROM "
                          f"information_schema.role_table_grants WHERE grantee = '{database.role}' "
                          f"AND table_name = 'queries'")
    assert grants == "INSERT,SELECT"


def test_auditors_query_postgres_through_the_trino_client(pg_gateway: GatewayProcess, database: Database) -> None:
    run(pg_gateway, "SELECT c_phone FROM customer LIMIT 1", source="pg-sql")
    wait_count(database, "pg-sql", 1)
    rows = run(pg_gateway, "SELECT user_name, decision, received_at FROM gateway.audit.queries "
                           "WHERE source = 'pg-sql'", user="audrey", source="pg-auditor")
    assert [r[:2] for r in rows] == [["alice", "success"]]
    assert rows[0][2].tzinfo is not None  # timestamp with time zone
    access = run(pg_gateway, "SELECT table_name, column_name FROM gateway.audit.table_access "
                             "WHERE source = 'pg-sql'", user="audrey", source="pg-auditor")
    assert access == [["demo.tpch.customer", "c_phone"]]
    with pytest.raises(trino.exceptions.TrinoUserError, match="PERMISSION_DENIED"):
        run(pg_gateway, "SELECT count(*) FROM gateway.audit.queries", source="pg-nosy")


def load(gateway: GatewayProcess, source: str, clients: int, during: Any) -> int:
    """Clients run queries until `during()` returns (plus a little); the number of queries that finished."""
    errors: list[BaseException] = []
    done = threading.Event()
    finished = [0] * clients

    def client(n: int) -> None:
        try:
            cursor = trino.dbapi.connect(host=gateway.host, port=gateway.port, user="alice", catalog="demo",
                                         schema="tpch", source=source).cursor()
            while not done.is_set():
                cursor.execute(f"SELECT {n * 100000 + finished[n]} AS k FROM region LIMIT 1")
                cursor.fetchall()
                finished[n] += 1
                time.sleep(0.005)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        during()
        time.sleep(0.3)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert not errors
    return sum(finished)


def assert_complete_and_ordered(db: Database, source: str, expected: int) -> None:
    assert wait_count(db, source, expected, timeout=30) == expected
    # storage order (id) follows chain order (sequence) within the stream: nothing reordered by the outage
    out_of_order = db.sql("SELECT count(*) FROM (SELECT sequence_number, lag(sequence_number) OVER "
                          "(PARTITION BY stream ORDER BY id) AS prev FROM audit.queries) s "
                          "WHERE prev IS NOT NULL AND sequence_number <> prev + 1")
    assert out_of_order == "0"


def test_connections_cut_mid_load_lose_nothing_and_keep_order(pg_gateway: GatewayProcess,
                                                              database: Database) -> None:
    source = f"cut-{uuid.uuid4().hex[:6]}"

    def cut_twice() -> None:
        time.sleep(0.3)
        database.cut(refuse=False)  # a dropped connection: the next write reconnects
        time.sleep(0.3)
        try:
            database.cut(refuse=True)  # an outage: reconnects fail for a while, records are spooled
            deadline = time.monotonic() + 10
            while pg_gateway.metric("gateway_audit_store_up") != 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pg_gateway.metric("gateway_audit_store_up") == 0, pg_gateway.log()[-3000:]
            time.sleep(0.5)  # queries keep finishing while the store is away
            assert pg_gateway.metric("gateway_audit_spool_bytes") > 0
        finally:
            database.restore()

    queries = load(pg_gateway, source, clients=4, during=cut_twice)
    assert queries > 50
    assert_complete_and_ordered(database, source, queries)
    assert pg_gateway.metric("gateway_audit_store_failures_total") >= 1


def test_deny_mode_refuses_queries_while_the_store_is_down(demo_database: Path, database: Database,
                                                           tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, pg_config(demo_database, tmp_path, database, on_failure="deny"))
    try:
        assert run(gateway, "SELECT count(*) FROM region", source="deny") == [[5]]
        database.cut(refuse=True)
        deadline = time.monotonic() + 10
        refused = None  # the first write after the cut fails; from then on nothing runs
        while time.monotonic() < deadline:
            try:
                run(gateway, "SELECT count(*) FROM region", source="deny")
            except trino.exceptions.TrinoExternalError as error:
                refused = error
                break
            time.sleep(0.2)
        assert refused is not None and refused.error_name == "AUDIT_UNAVAILABLE"
        database.restore()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                assert run(gateway, "SELECT count(*) FROM region", source="deny") == [[5]]
                break
            except trino.exceptions.TrinoExternalError:
                time.sleep(0.3)
        else:
            pytest.fail("queries still refused after the store came back")
    finally:
        database.restore()
        gateway.stop()


def test_verify_detects_tampering_in_postgres(pg_gateway: GatewayProcess, database: Database) -> None:
    source = f"tamper-{uuid.uuid4().hex[:6]}"
    for _ in range(6):
        run(pg_gateway, "SELECT count(*) FROM region", source=source)
    wait_count(database, source, 6)

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "verify", "--config",
                               str(pg_gateway.config_path)], capture_output=True, text=True, timeout=60)

    clean = verify()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    ids = database.sql(f"SELECT string_agg(id::text, ',' ORDER BY id) FROM audit.queries "
                       f"WHERE source = '{source}'").split(",")
    database.sql(f"SET session_replication_role = replica; UPDATE audit.queries SET user_name = 'mallory' "
                 f"WHERE id = {ids[2]}")  # the owner bypasses the trigger
    modified = verify()
    assert modified.returncode == 1 and "MODIFIED" in modified.stdout and f"row id {ids[2]}" in modified.stdout
    database.sql(f"SET session_replication_role = replica; DELETE FROM audit.queries WHERE id = {ids[4]}")
    deleted = verify()
    assert "DELETED" in deleted.stdout


def test_the_ledger_lives_in_postgres_with_its_audit_record(pg_gateway: GatewayProcess, database: Database) -> None:
    run(pg_gateway, "SELECT count(*) FROM lineitem", source="pg-ledger")
    assert wait_count(database, "pg-ledger", 1) == 1
    deadline = time.monotonic() + 20
    while not (linked := database.sql(
            "SELECT c.cost = q.cost, c.cost_center, c.cost > 0 FROM billing.charges c JOIN audit.queries q "
            "ON q.event_id = c.event_id WHERE q.source = 'pg-ledger'")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert linked == "t|CC-2001|t"  # alice's cost center, the same cost as her audit record
    shares = database.sql("SELECT sum(a.cost) = max(c.cost), count(*) FROM billing.attributions a JOIN "
                          "billing.charges c USING (event_id) JOIN audit.queries q USING (event_id) "
                          "WHERE q.source = 'pg-ledger'")
    assert shares == "t|1"  # one table read: one attribution, the whole cost
    with pytest.raises(RuntimeError, match="permission denied"):
        database.sql("DELETE FROM billing.charges", user=database.role)
    rows = run(pg_gateway, "SELECT user_name, cost_center FROM gateway.billing.charges WHERE user_name = 'alice'",
               user="fiona", source="pg-finance")
    assert ["alice", "CC-2001"] in [list(r) for r in rows]
    with pytest.raises(trino.exceptions.TrinoUserError, match="PERMISSION_DENIED"):
        run(pg_gateway, "SELECT count(*) FROM gateway.billing.charges", source="pg-nosy-billing")
