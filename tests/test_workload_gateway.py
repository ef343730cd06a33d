"""Workload management through real gateway processes: queues, priorities, caps, kills, and (with the real
Redis on 127.0.0.1:6379) limits shared by two replicas."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino

from tests.conftest import POLICIES, REDIS_URL, GatewayProcess, demo_config, needs_redis

_unique = itertools.count(1)


def slow_sql() -> str:
    """Runs for minutes, interruptible; unique text, so the result cache never answers or coalesces it."""
    return f"SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x{next(_unique)}'"


def fast_sql() -> str:
    """25 rows counted; unique text (no cache hits, so every one is admitted)."""
    return f"SELECT count(*) FROM nation WHERE n_nationkey > -{next(_unique)}"



WORKLOAD = """
resource_groups:
  - {name: serial, priority: 1, max_concurrency: 1, max_queued: 2, selectors: [{client_tags: [serial]}]}
  - {name: impatient, max_concurrency: 1, max_queued: 5, queue_timeout: 1s, selectors: [{client_tags: [impatient]}]}
  - {name: capped, max_concurrency: 2, max_queued: 5, max_execution_time: 1s, selectors: [{client_tags: [capped]}]}
  - {name: rows, max_concurrency: 4, max_queued: 5, max_result_rows: 100, selectors: [{client_tags: [rows]}]}
  - {name: scan, max_concurrency: 4, max_queued: 5, max_scan_bytes: 1MB, selectors: [{client_tags: [scan]}]}
  - {name: default, max_concurrency: 8, max_queued: 100, selectors: [{}]}
"""

PRIORITIES = """
capacity: {max_concurrency: 1}
resource_groups:
  - {name: high, priority: 10, max_concurrency: 1, max_queued: 10, selectors: [{client_tags: [high]}]}
  - {name: low, priority: 1, max_concurrency: 1, max_queued: 10, selectors: [{client_tags: [low]}]}
  - {name: default, max_concurrency: 8, max_queued: 100, selectors: [{}]}
"""

SHARED = """
resource_groups:
  - {name: shared, max_concurrency: 2, max_queued: 20, max_execution_time: 1s, selectors: [{client_tags: [shared]}]}
  - {name: held, max_concurrency: 2, max_queued: 20, selectors: [{client_tags: [held]}]}
  - {name: default, max_concurrency: 8, max_queued: 100, selectors: [{}]}
"""


def policies_with(directory: Path, workload: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for file in POLICIES.glob("*.yaml"):
        if file.name != "workload.yaml":
            shutil.copy(file, directory)
    (directory / "workload.yaml").write_text(workload)
    return directory


def start_gateway(workdir: Path, database: Path, groups: str, **sections: Any) -> GatewayProcess:
    config = demo_config(database, **sections)
    config["policies"] = {"dir": str(policies_with(workdir / "policies", groups)), "reload_seconds": 0.2}
    # These tests send identical slow queries on purpose: without this the result cache would coalesce them.
    config.setdefault("cache", {"enabled": False})
    return GatewayProcess(workdir, config)


def headers(user: str = "alice", tags: str = "") -> dict[str, str]:
    result = {"X-Trino-User": user, "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}
    if tags:
        result["X-Trino-Client-Tags"] = tags
    return result


def post(gateway: GatewayProcess, sql: str, *, user: str = "alice", tags: str = "") -> dict[str, Any]:
    response = httpx.post(f"{gateway.url}/v1/statement", content=sql, headers=headers(user, tags), timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def follow(body: dict[str, Any], *, user: str = "alice") -> dict[str, Any]:
    """Poll nextUri to the end; the last response, with every row under `rows`."""
    rows = list(body.get("data", []))
    while "nextUri" in body:
        body = httpx.get(body["nextUri"], headers={"X-Trino-User": user}, timeout=30).json()
        rows += body.get("data", [])
    return {**body, "rows": rows}


def api(gateway: GatewayProcess, user: str = "admin") -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}/api/queries", headers={"X-Trino-User": user}, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def state_of(gateway: GatewayProcess, query_id: str) -> str | None:
    return next((q["state"] for q in api(gateway)["queries"] if q["query_id"] == query_id), None)


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.05)


def busy(gateway: GatewayProcess) -> float:
    return gateway.metric("gateway_backend_busy_threads", 'backend="demo"')


def start_slow(gateway: GatewayProcess, tags: str, user: str = "alice") -> dict[str, Any]:
    body = post(gateway, slow_sql(), user=user, tags=tags)
    wait_until(lambda: state_of(gateway, body["id"]) == "RUNNING", what="the slow query running")
    return body


def kill(gateway: GatewayProcess, query_id: str, user: str = "admin", message: str = "") -> httpx.Response:
    return httpx.delete(f"{gateway.url}/api/queries/{query_id}", params={"message": message} if message else None,
                        headers={"X-Trino-User": user}, timeout=10)


@pytest.fixture(scope="module")
def wl(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("workload"), demo_database, WORKLOAD,
                            protocol={"max_wait_seconds": 0.3})
    yield process
    process.stop()


def test_queued_queries_are_visible_cancellable_and_bounded(wl: GatewayProcess) -> None:
    slow = start_slow(wl, "serial")
    queued = post(wl, fast_sql(), tags="serial")
    assert queued["stats"]["state"] == "QUEUED" and queued["stats"]["queued"] is True and "nextUri" in queued
    polled = httpx.get(queued["nextUri"], headers=headers(), timeout=10).json()
    assert polled["stats"]["state"] == "QUEUED" and polled["stats"]["queuedTimeMillis"] > 0
    listing = api(wl)
    assert {"name": "serial", "priority": 1, "max_concurrency": 1, "max_queued": 2, "running": 1, "queued": 1} \
        in listing["groups"]
    assert state_of(wl, queued["id"]) == "QUEUED"

    # a client cancel (DELETE nextUri) takes it out of the queue
    assert httpx.delete(polled["nextUri"], headers=headers(), timeout=10).status_code == 204
    wait_until(lambda: state_of(wl, queued["id"]) is None, what="the cancelled query leaving the queue")
    assert wl.metric("gateway_workload_queued", 'group="serial"') == 0

    # the queue holds max_queued (2); the next query is refused at once
    waiting = [post(wl, fast_sql(), tags="serial") for _ in range(2)]
    began = time.monotonic()
    refused = follow(post(wl, fast_sql(), tags="serial"))  # refused on its first poll, never queued
    assert refused["stats"]["state"] == "FAILED" and time.monotonic() - began < 1
    assert refused["error"]["errorName"] == "QUERY_QUEUE_FULL" and refused["error"]["errorCode"] == 0x20002
    assert "'serial'" in refused["error"]["message"] and refused["error"]["errorType"] == "INSUFFICIENT_RESOURCES"
    assert wl.metric("gateway_workload_rejections_total", 'reason="queue_full"') >= 1

    # an admin kills the running query: its client is told, DuckDB stops, and the queue moves on
    assert kill(wl, slow["id"], message="make room").status_code == 200
    ended = follow(slow)
    assert ended["error"]["errorName"] == "ADMINISTRATIVELY_KILLED"
    assert ended["error"]["message"] == "Query killed. Message: make room"
    wait_until(lambda: busy(wl) == 0, what="DuckDB idle")
    assert [follow(w)["rows"] for w in waiting] == [[[25]], [[25]]]


def test_queue_timeout_names_the_group_and_the_limit(wl: GatewayProcess) -> None:
    slow = start_slow(wl, "impatient")
    began = time.monotonic()
    ended = follow(post(wl, fast_sql(), tags="impatient"))
    assert 0.9 < time.monotonic() - began < 5
    assert ended["error"]["errorName"] == "EXCEEDED_TIME_LIMIT"
    assert ended["error"]["message"] == "Query exceeded the queue timeout of 1s of resource group 'impatient'"
    assert state_of(wl, ended["id"]) is None
    # kill_query as Superset sends it: another user may not, the query's own user may
    with trino.dbapi.connect(host=wl.host, port=wl.port, user="bob", catalog="demo", schema="tpch") as other, \
            pytest.raises(trino.exceptions.TrinoUserError) as denied:
        other.cursor().execute(f"CALL system.runtime.kill_query(query_id => '{slow['id']}', message => 'x')")
    assert denied.value.error_name == "PERMISSION_DENIED"
    connection = trino.dbapi.connect(host=wl.host, port=wl.port, user="alice", catalog="demo", schema="tpch")
    cursor = connection.cursor()
    cursor.execute(f"CALL system.runtime.kill_query(query_id => '{slow['id']}', message => 'Cancelled by Superset')")
    cursor.fetchall()
    assert follow(slow)["error"]["message"] == "Query killed. Message: Cancelled by Superset"
    with pytest.raises(trino.exceptions.TrinoUserError) as missing:
        cursor.execute("CALL system.runtime.kill_query(query_id => '20200101_000000_00000_nope0')")
    assert missing.value.error_name == "NOT_FOUND"
    connection.close()
    wait_until(lambda: busy(wl) == 0, what="DuckDB idle")


def test_execution_time_cap_stops_the_backend_query(wl: GatewayProcess) -> None:
    connection = trino.dbapi.connect(host=wl.host, port=wl.port, user="alice", catalog="demo", schema="tpch",
                                     client_tags=["capped"])
    began = time.monotonic()
    with connection, pytest.raises(trino.exceptions.TrinoQueryError) as exceeded:
        connection.cursor().execute(slow_sql())
    assert 0.9 < time.monotonic() - began < 10
    assert exceeded.value.error_name == "EXCEEDED_TIME_LIMIT"
    assert exceeded.value.message == "Query exceeded the maximum execution time of 1s of resource group 'capped'"
    wait_until(lambda: busy(wl) == 0, timeout=5, what="DuckDB's work stopping")  # the backend query really ended
    assert wl.metric("gateway_workload_kills_total", 'group="capped",reason="execution_time"') == 1


def test_result_row_cap_is_an_error_never_a_cut(wl: GatewayProcess) -> None:
    exactly = follow(post(wl, "SELECT l_orderkey FROM lineitem LIMIT 100", user="admin", tags="rows"),
                     user="admin")
    assert "error" not in exactly and len(exactly["rows"]) == 100
    over = follow(post(wl, "SELECT l_orderkey FROM lineitem", user="admin", tags="rows"), user="admin")
    assert over["error"]["errorName"] == "EXCEEDED_RESULT_ROWS_LIMIT"
    assert "maximum of 100 result rows of resource group 'rows'" in over["error"]["message"]
    assert wl.metric("gateway_workload_kills_total", 'group="rows",reason="result_rows"') == 1


def test_scan_estimate_over_max_scan_bytes_is_refused_before_running(wl: GatewayProcess) -> None:
    refused = follow(post(wl, "SELECT l_comment, l_orderkey FROM lineitem", user="admin", tags="scan"),
                     user="admin")
    assert refused["error"]["errorName"] == "EXCEEDED_SCAN_LIMIT"
    assert "max_scan_bytes of resource group 'scan'" in refused["error"]["message"]
    nations = follow(post(wl, "SELECT n_name FROM nation", user="admin", tags="scan"), user="admin")
    assert nations["rows"][0] == ["ALGERIA"]


def test_admin_api_shows_own_queries_to_users_and_everything_to_admins(wl: GatewayProcess) -> None:
    slow = start_slow(wl, "serial", user="bob")
    mine = api(wl, user="alice")
    assert slow["id"] not in [q["query_id"] for q in mine["queries"]]
    assert any(g["name"] == "serial" and g["running"] == 1 for g in mine["groups"])  # counts are for everyone
    assert kill(wl, slow["id"], user="alice").status_code == 403
    everything = api(wl)
    entry = next(q for q in everything["queries"] if q["query_id"] == slow["id"])
    assert entry["user"] == "bob" and entry["group"] == "serial" and entry["sql"].startswith("SELECT count(*) FROM")
    assert kill(wl, slow["id"], user="bob").status_code == 200
    assert kill(wl, slow["id"], user="bob").status_code == 404
    assert follow(slow, user="bob")["error"]["message"] == "Query killed. No message provided."
    wait_until(lambda: busy(wl) == 0, what="DuckDB idle")


def test_cli_lists_queries(wl: GatewayProcess) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "gateway.cli", "queries", "--server", wl.url, "--user", "admin"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "serial" in result.stdout and "capped" in result.stdout


def test_a_free_slot_goes_to_the_highest_priority_waiter(demo_database: Path, tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, demo_database, PRIORITIES, protocol={"max_wait_seconds": 0.1},
                            logging={"format": "json"})
    try:
        slow = start_slow(gateway, "low")
        names = ["low1", "high1", "low2", "high2"]
        queued = {name: post(gateway, fast_sql(), tags=name[:-1]) for name in names}  # queued in this order
        assert all(q["stats"]["state"] == "QUEUED" for q in queued.values())
        assert kill(gateway, slow["id"]).status_code == 200
        assert follow(slow)["error"]["errorName"] == "ADMINISTRATIVELY_KILLED"
        for body in queued.values():
            assert follow(body)["rows"] == [[25]]
        finished = [json.loads(line)["query_id"] for line in gateway.log().splitlines()
                    if line.startswith("{") and '"logger": "gateway.query"' in line and '"query_id"' in line]
        by_id = {body["id"]: name for name, body in queued.items()}
        order = [by_id[query_id] for query_id in finished if query_id in by_id]
        assert order == ["high1", "high2", "low1", "low2"]  # capacity 1: finish order is admission order
        waits = gateway.metric("gateway_workload_queue_wait_seconds_count", 'group="high"')
        assert waits == 2
    finally:
        gateway.stop()


# --- two replicas sharing Redis ----------------------------------------------------------------------------


def replica(workdir: Path, database: Path, prefix: str, lease: float = 10.0) -> GatewayProcess:
    return start_gateway(workdir, database, SHARED, protocol={"max_wait_seconds": 0.2},
                         workload={"redis": REDIS_URL, "key_prefix": prefix, "lease_seconds": lease,
                                   "poll_seconds": 0.02})


@needs_redis
def test_two_replicas_never_exceed_a_groups_concurrency_together(demo_database: Path, tmp_path: Path,
                                                                  redis_prefix: str) -> None:
    a = replica(tmp_path / "a", demo_database, redis_prefix)
    b = replica(tmp_path / "b", demo_database, redis_prefix)
    try:
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(sum(g.metric("gateway_workload_running", 'group="shared"') for g in (a, b)))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        began = time.monotonic()
        bodies = [post(g, slow_sql(), tags="shared") for g in (a, b, a, b, a, b)]  # each runs 1s (max_execution_time)
        results = [follow(body) for body in bodies]
        elapsed = time.monotonic() - began
        stop.set()
        sampler.join()
        assert [r["error"]["errorName"] for r in results] == ["EXCEEDED_TIME_LIMIT"] * 6  # all ran, none lost
        assert max(samples) == 2  # the limit was reached and never exceeded, across both replicas
        assert elapsed > 2.5  # 6 queries x 1s through 2 shared slots: at least three rounds
        cluster = api(a)
        assert cluster["scope"] == "cluster"
        wait_until(lambda: busy(a) == 0 and busy(b) == 0, what="DuckDB idle")
    finally:
        a.stop()
        b.stop()


@needs_redis
def test_a_killed_replicas_slots_return_within_the_lease(demo_database: Path, tmp_path: Path,
                                                         redis_prefix: str) -> None:
    lease = 2.0
    doomed = replica(tmp_path / "doomed", demo_database, redis_prefix, lease=lease)
    survivor = replica(tmp_path / "survivor", demo_database, redis_prefix, lease=lease)
    try:
        for _ in range(2):
            post(doomed, slow_sql(), tags="held")
        wait_until(lambda: doomed.metric("gateway_workload_running", 'group="held"') == 2)
        waiting = post(survivor, fast_sql(), tags="held")
        assert waiting["stats"]["state"] == "QUEUED"
        entries = api(survivor)["queries"]
        assert sorted(q["state"] for q in entries) == ["QUEUED", "RUNNING", "RUNNING"]
        doomed.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert follow(waiting)["rows"] == [[25]]
        assert time.monotonic() - killed_at < lease + 1.5
    finally:
        doomed.stop()
        survivor.stop()
