"""Retries, circuit breaker, pool bounds and the scan estimate, through a real gateway on the real PostgreSQL.

A TcpProxy of the test's own sits between the gateway and 127.0.0.1:5432, so connections can be dropped at
the start of a query or in the middle of its rows without touching the server. The database
(`gw_res_<random>`) and its read-only role are this module's own and dropped at the end.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino
import yaml

from gateway.backends.postgres import scanned_bytes
from gateway.testing import GatewayProcess
from tests.conftest import POLICIES
from tests.pg_warehouse import available, psql
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(not available(), reason="PostgreSQL on 127.0.0.1:5432 is required")

ROWS = 60_000
SETUP = f"""
CREATE SCHEMA s;
CREATE TABLE s.numbers AS SELECT n, md5(n::text) AS pad FROM generate_series(1, {ROWS}) AS n;
CREATE TABLE s.one AS SELECT 1 AS n;
CREATE VIEW s.sleepy AS SELECT 1 AS slept FROM pg_sleep(2);
ANALYZE;
"""
SMALL_SCANS = {"name": "small_scans", "priority": 5, "max_concurrency": 4, "max_queued": 10,
               "max_scan_bytes": "100KB", "selectors": [{"client_tags": ["small"]}]}
ONE_SECOND = {"name": "one_second", "priority": 5, "max_concurrency": 4, "max_queued": 10,
              "max_execution_time": "1s", "selectors": [{"client_tags": ["brief"]}]}


class Database:
    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.name, self.reader = f"gw_res_{suffix}", f"gw_res_reader_{suffix}"
        psql(f"CREATE DATABASE {self.name}")
        psql(f"CREATE ROLE {self.reader} LOGIN")
        psql(SETUP + f"GRANT USAGE ON SCHEMA s TO {self.reader}; GRANT SELECT ON ALL TABLES IN SCHEMA s TO "
             f"{self.reader}", self.name)

    def dsn(self, port: int) -> str:
        return f"postgresql://{self.reader}@127.0.0.1:{port}/{self.name}"

    def drop(self) -> None:
        psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        psql(f"DROP ROLE IF EXISTS {self.reader}")


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    created = Database()
    yield created
    created.drop()


def policies(target: Path) -> Path:
    shutil.copytree(POLICIES, target)
    (target / "pg_s.yaml").write_text(yaml.safe_dump(
        {"tables": [{"name": "pg.s.*", "owner": "platform", "access": [{}]}]}))
    workload = yaml.safe_load((target / "workload.yaml").read_text())
    workload["resource_groups"][:0] = [SMALL_SCANS, ONE_SECOND]
    (target / "workload.yaml").write_text(yaml.safe_dump(workload))
    return target


def start_gateway(work: Path, dsn: str, **backend: Any) -> GatewayProcess:
    config = {"backends": {"pg": {"type": "postgres", "dsn": dsn, **backend}},
              "policies": {"dir": str(policies(work / "policies"))}, "cache": {"enabled": False},
              "protocol": {"page_rows": 500}}
    return GatewayProcess(work, config)


def cursor(gateway: GatewayProcess, **options: Any) -> Any:
    return trino.dbapi.connect(host=gateway.host, port=gateway.port, user="alice", catalog="pg", schema="s",
                               **options).cursor()


def rows(gateway: GatewayProcess, sql: str, **options: Any) -> list[tuple[Any, ...]]:
    c = cursor(gateway, **options)
    c.execute(sql)
    return [tuple(r) for r in c.fetchall()]


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    created = TcpProxy(5432)
    yield created
    created.close()


def test_a_read_whose_connection_drops_at_the_start_is_retried(database: Database, proxy: TcpProxy,
                                                               tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, database.dsn(proxy.port), retries={"attempts": 6, "backoff_seconds": 0.2},
                            circuit={"failures": 20})
    try:
        assert rows(gateway, "SELECT count(*) FROM numbers") == [(ROWS,)]
        proxy.cut()  # the pooled connection dies with it; new ones are refused for a while
        threading.Timer(0.5, proxy.restore).start()
        assert rows(gateway, "SELECT count(*) FROM numbers") == [(ROWS,)]
        assert gateway.metric("gateway_backend_retries_total", 'backend="pg"') >= 1
    finally:
        gateway.stop()


def test_retries_stay_within_the_query_time_limit(database: Database, proxy: TcpProxy, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, database.dsn(proxy.port), retries={"attempts": 10, "backoff_seconds": 0.3},
                            circuit={"failures": 100})
    try:
        proxy.cut()
        with pytest.raises(trino.exceptions.TrinoQueryError) as error:
            rows(gateway, "SELECT count(*) FROM one", client_tags=["brief"])
        assert error.value.message.startswith("PostgreSQL is unavailable")
        # waits of 0.3 s and 0.6 s fit in the 1 s limit; the third (1.2 s) would not: 2 of the 10 attempts
        assert 1 <= gateway.metric("gateway_backend_retries_total", 'backend="pg"') <= 2
    finally:
        gateway.stop()


def test_a_read_that_lost_its_connection_after_rows_is_never_retried(database: Database, proxy: TcpProxy,
                                                                     tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, database.dsn(proxy.port), retries={"attempts": 5, "backoff_seconds": 0.05})
    try:
        c = cursor(gateway)
        c.execute("SELECT n FROM numbers ORDER BY n")
        received = [tuple(r) for r in c.fetchmany(100)]
        assert received
        proxy.cut()
        with pytest.raises(trino.exceptions.TrinoQueryError) as error:
            while batch := c.fetchmany(1000):
                received.extend(tuple(r) for r in batch)
        assert error.value.error_name == "BACKEND_ERROR"
        assert error.value.message.startswith("PostgreSQL is unavailable")
        numbers = [r[0] for r in received]
        assert numbers == list(range(1, len(numbers) + 1))  # in order, none twice, none skipped
        assert len(numbers) < ROWS
        assert gateway.metric("gateway_backend_retries_total", 'backend="pg"') == 0
    finally:
        gateway.stop()


def test_the_circuit_opens_fails_fast_names_the_backend_and_closes_again(database: Database, proxy: TcpProxy,
                                                                         tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, database.dsn(proxy.port), retries={"attempts": 0},
                            circuit={"failures": 3, "reset_seconds": 0.5, "max_reset_seconds": 1})
    try:
        assert rows(gateway, "SELECT count(*) FROM one") == [(1,)]
        proxy.cut()
        messages = []
        for _ in range(4):
            with pytest.raises(trino.exceptions.TrinoQueryError) as error:
                rows(gateway, "SELECT count(*) FROM one")
            messages.append(error.value.message)
        assert all(m.startswith("PostgreSQL is unavailable") for m in messages[:3])
        assert messages[3].startswith("Backend pg is unavailable") and "retrying in" in messages[3]
        assert gateway.metric("gateway_backend_circuit_state", 'backend="pg"') == 2
        assert gateway.metric("gateway_backend_circuit_opens_total", 'backend="pg"') == 1
        ready = httpx.get(f"{gateway.url}/health/ready", timeout=10)
        assert ready.status_code == 503 and "pg" in ready.json()["backends"]
        proxy.restore()
        deadline = time.monotonic() + 20
        while httpx.get(f"{gateway.url}/health/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the circuit never closed"
            time.sleep(0.2)
        assert rows(gateway, "SELECT count(*) FROM one") == [(1,)]
        assert gateway.metric("gateway_backend_circuit_state", 'backend="pg"') == 0
    finally:
        gateway.stop()


def test_waiting_for_a_pooled_connection_is_bounded(database: Database, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, database.dsn(5432), pool_size=1, pool_timeout_seconds=0.5)
    try:
        slow = threading.Thread(target=rows, args=(gateway, "SELECT * FROM sleepy"))
        slow.start()
        deadline = time.monotonic() + 10
        while gateway.metric("gateway_backend_queries_running", 'backend="pg"') < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # it holds the only connection now
        with pytest.raises(trino.exceptions.TrinoQueryError) as error:
            rows(gateway, "SELECT count(*) FROM one")
        assert error.value.error_name == "GENERIC_INSUFFICIENT_RESOURCES"
        assert "No free connection to backend pg within 0.5s" in error.value.message
        slow.join()
        assert rows(gateway, "SELECT count(*) FROM one") == [(1,)]
        assert gateway.metric("gateway_backend_pool_timeouts_total", 'backend="pg"') == 1
        assert gateway.metric("gateway_backend_pool_wait_seconds_count", 'backend="pg"') >= 3
    finally:
        gateway.stop()


def test_max_scan_bytes_uses_the_postgresql_estimate(database: Database, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, database.dsn(5432))
    try:
        with pytest.raises(trino.exceptions.TrinoQueryError) as error:
            rows(gateway, "SELECT * FROM numbers", client_tags=["small"])
        assert error.value.error_name == "EXCEEDED_SCAN_LIMIT"
        assert rows(gateway, "SELECT n FROM numbers WHERE n = 7", client_tags=["small"]) == [(7,)]
        assert rows(gateway, "SELECT count(*) FROM one", client_tags=["small"]) == [(1,)]
    finally:
        gateway.stop()


def test_the_scan_estimate_reads_every_scan_of_the_plan(database: Database) -> None:
    import json

    def plan(sql: str) -> Any:
        return json.loads(psql(f"EXPLAIN (FORMAT JSON) {sql}", database.name))

    whole = scanned_bytes(plan("SELECT * FROM s.numbers"))
    assert ROWS * 30 < whole < ROWS * 60  # 60k rows of an int and a 32-character text
    assert scanned_bytes(plan("SELECT n FROM s.numbers")) < whole  # fewer columns, narrower rows
    joined = scanned_bytes(plan("SELECT * FROM s.numbers a JOIN s.one b USING (n)"))
    assert joined >= whole  # both scans count
    in_subquery = scanned_bytes(plan("SELECT (SELECT max(n) FROM s.numbers) FROM s.one"))
    assert in_subquery >= ROWS * 4  # a subplan's scan counts too
