"""The result cache through real gateways and the real client: identity safety first, then tiers, TTL,
bounds, determinism, a second replica, Redis going away, and coalescing."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trino
import yaml

from gateway.testing import free_port, listens_on
from tests.conftest import POLICIES, GatewayProcess, demo_config

SLOW = ("SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey "
        "WHERE a.l_comment < b.l_comment")


def query(gateway: GatewayProcess, user: str, sql: str, **options: Any) -> list[list[Any]]:
    connection = trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo",
                                     schema="tpch", **options)
    cursor = connection.cursor()
    cursor.execute(sql)
    return [list(r) for r in cursor.fetchall()]


def hits(gateway: GatewayProcess) -> float:
    return gateway.metric("gateway_cache_lookups_total", 'result="hit"')


def backend_runs(gateway: GatewayProcess) -> float:
    return gateway.metric("gateway_backend_execution_seconds_count", 'backend="demo"')


@pytest.fixture
def cached_gateway(demo_database: Path, tmp_path: Path) -> Iterator[GatewayProcess]:
    users = yaml.safe_load((POLICIES / "dev_users.yaml").read_text())
    users["users"]["alice_twin"] = users["users"]["alice"]  # the same identity facts under another name
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    (policies / "dev_users.yaml").write_text(yaml.safe_dump(users))
    gateway = GatewayProcess(tmp_path, {**demo_config(demo_database), "policies": {"dir": str(policies),
                                                                                    "reload_seconds": 0.2},
                                        "cache": {"ttl_seconds": 60, "max_entry_bytes": 200_000}})
    yield gateway
    gateway.stop()


def test_different_row_filters_never_share_an_entry(cached_gateway: GatewayProcess) -> None:
    sql = "SELECT c_custkey, c_nationkey, c_phone FROM customer ORDER BY c_custkey LIMIT 5"
    alice = query(cached_gateway, "alice", sql)
    before = hits(cached_gateway)
    bob = query(cached_gateway, "bob", sql)  # byte-identical SQL, different filter: must not hit
    assert hits(cached_gateway) == before
    assert {r[1] for r in alice} <= {1, 2, 3} and {r[1] for r in bob} <= {6, 7}
    assert query(cached_gateway, "admin", sql)[0][2] == "25-989-741-2988"  # admin: unmasked, own entry
    assert hits(cached_gateway) == before
    assert query(cached_gateway, "alice", sql) == alice  # alice again: a hit, same rows
    assert hits(cached_gateway) == before + 1


def test_same_identity_facts_share_an_entry(cached_gateway: GatewayProcess) -> None:
    sql = "SELECT count(*), min(c_phone) FROM customer"
    first = query(cached_gateway, "alice", sql)
    before = hits(cached_gateway)
    assert query(cached_gateway, "alice_twin", sql) == first
    assert hits(cached_gateway) == before + 1


def test_policy_change_invalidates(cached_gateway: GatewayProcess, tmp_path: Path) -> None:
    sql = "SELECT count(*) FROM nation"
    query(cached_gateway, "alice", sql)
    query(cached_gateway, "alice", sql)
    before = hits(cached_gateway)
    tables = tmp_path / "policies" / "tables.yaml"
    tables.write_text(tables.read_text() + "\n# a new policy version\n")
    deadline = time.monotonic() + 10
    while cached_gateway.metric("gateway_policy_reloads_total", 'outcome="loaded"') < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    query(cached_gateway, "alice", sql)
    assert hits(cached_gateway) == before  # made under the old version: not served


def test_non_deterministic_queries_are_never_cached(cached_gateway: GatewayProcess) -> None:
    before = hits(cached_gateway)
    for sql in ("SELECT now()", "SELECT random()", "SELECT count(*) FROM nation WHERE n_nationkey < random() * 30"):
        query(cached_gateway, "alice", sql)
        query(cached_gateway, "alice", sql)
    assert hits(cached_gateway) == before


def test_bypass_by_client_tag_and_session_property(cached_gateway: GatewayProcess) -> None:
    sql = "SELECT count(*) FROM region"
    query(cached_gateway, "alice", sql)
    before = hits(cached_gateway)
    query(cached_gateway, "alice", sql, client_tags=["nocache"])
    query(cached_gateway, "alice", sql, session_properties={"result_cache": "false"})
    assert hits(cached_gateway) == before


def test_large_results_are_streamed_not_cached(cached_gateway: GatewayProcess) -> None:
    rejected = cached_gateway.metric("gateway_cache_rejected_total")
    runs = backend_runs(cached_gateway)
    for _ in range(2):
        rows = query(cached_gateway, "admin", "SELECT * FROM orders")
        assert len(rows) == 15000
    assert backend_runs(cached_gateway) == runs + 2
    assert cached_gateway.metric("gateway_cache_rejected_total") >= rejected


def test_ttl_expiry(demo_database: Path, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, {**demo_config(demo_database), "cache": {"ttl_seconds": 0.5}})
    try:
        query(gateway, "alice", "SELECT count(*) FROM part")
        before = hits(gateway)
        query(gateway, "alice", "SELECT count(*) FROM part")
        assert hits(gateway) == before + 1
        time.sleep(0.8)
        query(gateway, "alice", "SELECT count(*) FROM part")
        assert hits(gateway) == before + 1
    finally:
        gateway.stop()


def test_second_replica_serves_from_redis(demo_database: Path, tmp_path: Path, redis_prefix: str) -> None:
    config = {**demo_config(demo_database), "cache": {"redis": "redis://127.0.0.1:6379/0",
                                                      "redis_prefix": redis_prefix}}
    one, two = GatewayProcess(tmp_path, config), GatewayProcess(tmp_path, config)
    try:
        query(one, "alice", "SELECT max(r_name) FROM region")
        runs = backend_runs(two)
        assert query(two, "alice", "SELECT max(r_name) FROM region") == [["MIDDLE EAST"]]
        assert backend_runs(two) == runs  # served by Redis, not DuckDB
        assert two.metric("gateway_cache_lookups_total", 'tier="redis"') >= 1
    finally:
        one.stop()
        two.stop()


def test_redis_going_away_keeps_the_gateway_serving(demo_database: Path, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                if listens_on(server.pid, port):  # not another process handed the same free port
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        gateway = GatewayProcess(tmp_path, {**demo_config(demo_database),
                                            "cache": {"redis": f"redis://127.0.0.1:{port}/0"}})
        try:
            assert query(gateway, "alice", "SELECT count(*) FROM supplier") == [[100]]
            server.kill()
            server.wait()
            for sql in ("SELECT count(*) FROM supplier", "SELECT count(*) FROM partsupp"):
                assert len(query(gateway, "alice", sql)) == 1  # still answering: in-process tier only
            assert gateway.metric("gateway_cache_redis_errors_total") >= 1
        finally:
            gateway.stop()
    finally:
        if server.poll() is None:
            server.kill()


def test_identical_concurrent_queries_run_the_backend_once(cached_gateway: GatewayProcess) -> None:
    runs = backend_runs(cached_gateway)
    results: list[Any] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(query(cached_gateway, "admin", SLOW))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(results) == 6 and all(r == results[0] for r in results)
    assert backend_runs(cached_gateway) == runs + 1


def test_purge_by_table_through_the_api_and_the_cli(cached_gateway: GatewayProcess) -> None:
    import httpx

    query(cached_gateway, "alice", "SELECT count(*) FROM nation")
    query(cached_gateway, "alice", "SELECT count(*) FROM region")
    denied = httpx.post(f"{cached_gateway.url}/api/cache/purge", headers={"X-Trino-User": "alice"})
    assert denied.status_code == 403 and denied.json()["error"]["errorName"] == "PERMISSION_DENIED"
    purged = httpx.post(f"{cached_gateway.url}/api/cache/purge", params={"table": "demo.tpch.nation"},
                        headers={"X-Trino-User": "admin"})
    assert purged.status_code == 200 and purged.json()["purged"] >= 1
    before = hits(cached_gateway)
    query(cached_gateway, "alice", "SELECT count(*) FROM nation")  # purged: runs again
    query(cached_gateway, "alice", "SELECT count(*) FROM region")  # not purged: a hit
    assert hits(cached_gateway) == before + 1
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "cache", "purge", "--server", cached_gateway.url,
                             "--user", "admin"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "purged" in result.stdout
    query(cached_gateway, "alice", "SELECT count(*) FROM region")
    assert hits(cached_gateway) == before + 1
