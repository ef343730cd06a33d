"""Any replica answers any poll: gateway processes sharing Redis behind a round-robin balancer that sends every
request to the next replica (tests/balancer.py), with small pages so every query takes many polls."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.balancer import RoundRobinBalancer
from tests.conftest import REDIS_URL, GatewayProcess, demo_config, needs_redis

pytestmark = needs_redis
TTL = 1.5  # server.replica_ttl_seconds: a killed replica counts as gone this long after its last heartbeat
SLOW = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x{}'"


def start_replica(workdir: Path, database: Path, prefix: str, **server: Any) -> GatewayProcess:
    config = demo_config(database, protocol={"page_rows": 5, "max_wait_seconds": 0.2},
                         workload={"redis": REDIS_URL, "key_prefix": prefix, "poll_seconds": 0.02},
                         server={"replica_ttl_seconds": TTL, "shutdown_grace_seconds": 1, **server},
                         cache={"enabled": False})
    return GatewayProcess(workdir, config)


@pytest.fixture(scope="module")
def cluster(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    import redis

    prefix = f"test:scale:{time.time_ns()}:"
    workdir = tmp_path_factory.mktemp("scale")
    replicas = [start_replica(workdir / name, demo_database, prefix) for name in ("a", "b", "c")]
    yield replicas
    for replica in replicas:
        replica.stop()
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def balancer(cluster: list[GatewayProcess]) -> Iterator[RoundRobinBalancer]:
    with RoundRobinBalancer([replica.port for replica in cluster]) as proxy:
        yield proxy


def headers(user: str = "alice") -> dict[str, str]:
    return {"X-Trino-User": user, "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}


def forwarded(cluster: list[GatewayProcess], outcome: str = "forwarded") -> float:
    return sum(r.metric("gateway_forwarded_requests_total", f'outcome="{outcome}"') for r in cluster
               if _exposes(r, outcome))


def _exposes(replica: GatewayProcess, outcome: str) -> bool:
    try:
        replica.metric("gateway_forwarded_requests_total", f'outcome="{outcome}"')
    except KeyError:
        return False
    return True


def test_the_trino_client_pages_through_a_round_robin_balancer(cluster: list[GatewayProcess],
                                                               balancer: RoundRobinBalancer) -> None:
    before = forwarded(cluster)
    connection = trino.dbapi.connect(host="127.0.0.1", port=balancer.port, user="alice", catalog="demo",
                                     schema="tpch")
    cursor = connection.cursor()
    cursor.execute("SELECT n_nationkey, n_name FROM nation ORDER BY n_nationkey")
    rows = cursor.fetchall()
    assert [row[0] for row in rows] == list(range(25))
    assert all(count > 0 for count in balancer.connections)
    assert forwarded(cluster) - before >= 3  # most polls landed on a replica that does not hold the query


def test_the_trino_clients_cancel_through_the_balancer_stops_the_query(cluster: list[GatewayProcess],
                                                                       balancer: RoundRobinBalancer) -> None:
    cursor = trino.dbapi.connect(host="127.0.0.1", port=balancer.port, user="alice", catalog="demo",
                                 schema="tpch").cursor()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            cursor.execute(SLOW.format("client-cancel"))
            cursor.fetchall()
        except BaseException as error:  # the client raises when the query is cancelled
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 15
    while cursor.query_id is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    holder = next(r for r in cluster if _runs(r, cursor.query_id))
    cursor.cancel()  # a DELETE of nextUri, through the balancer: most likely to another replica
    worker.join(15)
    assert not worker.is_alive()
    deadline = time.monotonic() + 10
    while _runs(holder, cursor.query_id):
        assert time.monotonic() < deadline, "the query kept running after the cancel"
        time.sleep(0.05)


def _runs(replica: GatewayProcess, query_id: str) -> bool:
    queries = httpx.get(f"{replica.url}/api/queries", headers={"X-Trino-User": "admin"}, timeout=10).json()
    return any(q["query_id"] == query_id and q["replica"] is None for q in queries["queries"])


def test_every_uri_names_the_balancer_never_a_replica(cluster: list[GatewayProcess],
                                                      balancer: RoundRobinBalancer) -> None:
    with httpx.Client(timeout=30) as http:
        body = http.post(f"{balancer.url}/v1/statement", content="SELECT * FROM nation", headers=headers()).json()
        pages = 0
        rows: list[Any] = []
        while "nextUri" in body:
            assert body["nextUri"].startswith(balancer.url + "/")
            assert body["infoUri"].startswith(balancer.url + "/")
            body = http.get(body["nextUri"], headers=headers()).json()
            rows += body.get("data", [])
            pages += 1
        assert body["stats"]["state"] == "FINISHED" and len(rows) == 25 and pages >= 5


def test_query_info_from_any_replica_for_its_owner_only(cluster: list[GatewayProcess]) -> None:
    a, b, _ = cluster
    body = httpx.post(f"{a.url}/v1/statement", content="SELECT 1", headers=headers()).json()
    while "nextUri" in body:
        body = httpx.get(body["nextUri"], headers=headers(), timeout=30).json()
    info = httpx.get(f"{b.url}/v1/query/{body['id']}", headers=headers(), timeout=10)
    assert info.status_code == 200 and info.json()["queryId"] == body["id"]
    assert info.json()["self"].startswith(b.url)  # the URL the client asked, not the holder's
    other = httpx.get(f"{b.url}/v1/query/{body['id']}", headers=headers("bob"), timeout=10)
    assert other.status_code == 404  # the holder applied the owner rule
    unknown = httpx.get(f"{b.url}/v1/query/20200101_000000_00000_zzzzz", headers=headers(), timeout=10)
    assert unknown.status_code == 404


def wait_running(replica: GatewayProcess, query_id: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        queries = httpx.get(f"{replica.url}/api/queries", headers={"X-Trino-User": "admin"}, timeout=10).json()
        if any(q["query_id"] == query_id and q["state"] == "RUNNING" for q in queries["queries"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"{query_id} did not start running")


def last_page(url: str, user: str = "alice") -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(url, headers=headers(user), timeout=30).json()
    while "nextUri" in body and "error" not in body:
        body = httpx.get(body["nextUri"], headers=headers(user), timeout=30).json()
    return body


def test_cancel_through_another_replica(cluster: list[GatewayProcess]) -> None:
    a, b, _ = cluster
    body = httpx.post(f"{a.url}/v1/statement", content=SLOW.format("cancel"), headers=headers()).json()
    wait_running(a, body["id"])
    refused = httpx.delete(body["nextUri"].replace(a.url, b.url), headers=headers("bob"), timeout=10)
    assert refused.status_code == 404  # not bob's query: the holder says so, through b
    assert httpx.delete(body["nextUri"].replace(a.url, b.url), headers=headers(), timeout=10).status_code == 204
    final = last_page(body["nextUri"])
    assert final["error"]["errorName"] == "USER_CANCELED"


def test_kill_through_another_replica(cluster: list[GatewayProcess]) -> None:
    a, _, c = cluster
    body = httpx.post(f"{a.url}/v1/statement", content=SLOW.format("kill"), headers=headers()).json()
    wait_running(a, body["id"])
    assert httpx.delete(f"{c.url}/v1/query/{body['id']}", headers=headers("bob"), timeout=10).status_code == 404
    assert httpx.delete(f"{c.url}/v1/query/{body['id']}", headers=headers(), timeout=10).status_code == 204
    final = last_page(body["nextUri"].replace(a.url, c.url))
    assert final["error"]["errorName"] == "USER_CANCELED"


def test_a_forwarded_request_is_never_forwarded_again(cluster: list[GatewayProcess]) -> None:
    a, b, _ = cluster
    body = httpx.post(f"{a.url}/v1/statement", content="SELECT 2", headers=headers()).json()
    hop = {**headers(), "X-Gateway-Forwarded-By": "elsewhere"}
    assert httpx.get(f"{b.url}/v1/query/{body['id']}", headers=hop, timeout=10).status_code == 404
    last_page(body["nextUri"])


def test_a_dead_holders_queries_fail_with_a_clear_error(demo_database: Path, tmp_path: Path,
                                                         cluster: list[GatewayProcess]) -> None:
    a = cluster[0]
    prefix = _prefix_of(a)
    doomed = start_replica(tmp_path / "doomed", demo_database, prefix)
    try:
        body = httpx.post(f"{doomed.url}/v1/statement", content=SLOW.format("dead"), headers=headers()).json()
        wait_running(doomed, body["id"])
        doomed.stop(signal.SIGKILL)
        time.sleep(TTL + 0.5)
        final = httpx.get(body["nextUri"].replace(doomed.url, a.url), headers=headers(), timeout=10).json()
        assert final["stats"]["state"] == "FAILED"
        assert "no longer available" in final["error"]["message"]
        assert final["error"]["errorName"] == "GENERIC_INTERNAL_ERROR"
        info = httpx.get(f"{a.url}/v1/query/{body['id']}", headers=headers(), timeout=10)
        assert info.status_code == 502 and "no longer available" in info.json()["message"]
    finally:
        doomed.stop(signal.SIGKILL)


def _prefix_of(replica: GatewayProcess) -> str:
    import yaml

    return str(yaml.safe_load(replica.config_path.read_text())["workload"]["key_prefix"])


def node_ids(url: str, attempts: int = 40) -> set[str]:
    """The node ids that answer on `url` over fresh connections (the kernel spreads them over the workers)."""
    seen = set()
    for _ in range(attempts):
        with httpx.Client(timeout=10) as http:
            seen.add(http.get(f"{url}/v1/node").json()[0]["nodeId"])
    return seen


def test_two_workers_share_the_port_and_page_each_others_queries(demo_database: Path, tmp_path: Path,
                                                                  redis_prefix: str) -> None:
    process = start_replica(tmp_path / "workers", demo_database, redis_prefix, workers=2)
    try:
        deadline = time.monotonic() + 30
        while len(node_ids(process.url, 10)) < 2:  # the second worker starts once the first is ready
            assert time.monotonic() < deadline, "the second worker never answered"
        for _ in range(3):
            body = httpx.post(f"{process.url}/v1/statement", content="SELECT * FROM nation", headers=headers(),
                              timeout=30).json()
            rows = list(body.get("data", []))
            while "nextUri" in body:
                assert body["nextUri"].startswith(process.url + "/")
                body = httpx.get(body["nextUri"], headers=headers(), timeout=30).json()  # a new connection each
                rows += body.get("data", [])
            assert body["stats"]["state"] == "FINISHED" and len(rows) == 25
        streams = {p.name.split(".", 1)[0] for p in (tmp_path / "workers").rglob("*.jsonl")}
        assert len(streams) >= 2  # one audit journal stream per worker process
        slow = httpx.post(f"{process.url}/v1/statement", content=SLOW.format("drain"), headers=headers(),
                          timeout=30).json()
        time.sleep(0.5)
        assert process.stop(signal.SIGTERM) == 0  # every worker drained (1 s grace), then the parent exited
        assert "draining" in process.log()
        assert slow["id"]
    finally:
        process.stop(signal.SIGKILL)


def test_more_workers_than_one_need_redis(tmp_path: Path, demo_database: Path) -> None:
    from gateway.config import ConfigError, load_settings

    path = tmp_path / "gateway.yaml"
    path.write_text(f"backends: {{demo: {{type: duckdb, path: '{demo_database}'}}}}\nserver: {{workers: 2}}\n")
    with pytest.raises(ConfigError, match=r"server\.workers: more than 1 worker needs workload\.redis"):
        load_settings(path)


@settings(max_examples=50, deadline=None)
@given(quota=st.integers(1, 10**7), period=st.integers(1000, 10**6))
def test_default_workers_follow_a_containers_cpu_limit(tmp_path_factory: pytest.TempPathFactory, quota: int,
                                                       period: int) -> None:
    import math
    import os

    from gateway.workers import usable_cores, worker_count

    cpu_max = tmp_path_factory.mktemp("cgroup") / "cpu.max"
    affinity = len(os.sched_getaffinity(0))
    cpu_max.write_text(f"{quota} {period}\n")
    assert usable_cores(cpu_max) == max(1, min(affinity, math.ceil(quota / period)))
    cpu_max.write_text(f"max {period}\n")
    assert usable_cores(cpu_max) == affinity
    assert worker_count(None, shared_state=False) == 1
    assert worker_count(3, shared_state=False) == 3
