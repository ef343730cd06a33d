"""The Trino backend end to end: an outer gateway (`type: trino`) chained to an inner gateway process serving
Trino's client protocol over the embedded DuckDB demo. A Trino server cannot be installed here, so the inner
gateway stands in for it (tests/test_trino_backend_shapes.py covers the shapes only a real Trino produces).

The inner lets everyone read demo.tpch (its policy is not the test's subject) and audits what it runs; the
outer applies the shipped policies with the same mask key as the suite's reference gateway (DuckDB), so a
masked or filtered answer through the chain must equal the reference's answer for the same user.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino
import yaml

from gateway.backends.trino import TrinoBackend
from gateway.backends.trino_settings import TrinoSettings
from gateway.errors import BackendError
from tests.conftest import POLICIES, GatewayProcess, api_keys_file
from tests.tcp_proxy import HangingProxy, TcpProxy

TPCH = sorted((Path(__file__).parent / "tpch").glob("q*.sql"))
FAST = ("q01", "q03", "q06", "q13")
TPCH_CASES = [q if q.stem in FAST else pytest.param(q, marks=pytest.mark.slow) for q in TPCH]
POLICY_QUERIES = {
    "customers": "SELECT c_custkey, c_name, c_address, c_phone, c_acctbal, c_nationkey FROM customer ORDER BY 1",
    "orders": "SELECT o_orderkey, o_custkey, o_clerk, o_totalprice FROM orders ORDER BY 1 LIMIT 500",
    "q10": (Path(__file__).parent / "tpch" / "q10.sql").read_text(),
}
# A query DuckDB needs minutes for (3.6e9 string comparisons), stopped long before it ends.
SLOW_SQL = ("SELECT count(*) AS n, '{marker}' AS marker FROM lineitem a CROSS JOIN lineitem b "
            "WHERE a.l_comment || b.l_comment = 'never'")
LIMITED_GROUP = {"name": "limited", "priority": 5, "max_concurrency": 4, "max_queued": 10,
                 "max_execution_time": "2s", "selectors": [{"client_tags": ["limited"]}]}
INNER_TABLES = {"tables": [{"name": "demo.tpch.*", "owner": "platform", "access": [{}]},
                           {"name": "gateway.audit.*", "owner": "platform",
                            "access": [{"when": {"groups": ["auditors"]}}]}]}
INNER_USERS = {"users": {"audrey": {"groups": ["auditors"]}, "inspector": {"groups": ["admins"]}}}


def inner_config(database: Path, policies: Path) -> dict[str, Any]:
    policies.mkdir(parents=True, exist_ok=True)
    (policies / "tables.yaml").write_text(yaml.safe_dump(INNER_TABLES))
    (policies / "dev_users.yaml").write_text(yaml.safe_dump(INNER_USERS))
    return {"backends": {"demo": {"type": "duckdb", "path": str(database), "schema": "tpch"}},
            "policies": {"dir": str(policies)}, "protocol": {"page_rows": 700},  # outer pages through many
            "cache": {"enabled": False}, "server": {"shutdown_grace_seconds": 2}}


def outer_config(url: str, policies: Path, mask_key: Path, **trino_keys: Any) -> dict[str, Any]:
    if not policies.exists():
        shutil.copytree(POLICIES, policies)
        workload = yaml.safe_load((policies / "workload.yaml").read_text())
        workload["resource_groups"].insert(0, LIMITED_GROUP)
        (policies / "workload.yaml").write_text(yaml.safe_dump(workload))
    backend = {"type": "trino", "url": url, "catalog": "demo", "schema": "tpch", "forward_identity": True,
               "pool_size": 4, **trino_keys}
    return {"backends": {"demo": backend}, "policies": {"dir": str(policies)},
            "masking": {"key_file": str(mask_key)}, "cache": {"enabled": False},
            "server": {"shutdown_grace_seconds": 2}}


@pytest.fixture(scope="module")
def inner(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("trino-inner")
    process = GatewayProcess(work, inner_config(demo_database, work / "policies"))
    yield process
    process.stop()


def reference_mask_key(gateway: GatewayProcess) -> Path:
    return gateway.config_path.parent / "data" / "mask.key"


@pytest.fixture(scope="module")
def outer(inner: GatewayProcess, gateway: GatewayProcess,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("trino-outer")
    process = GatewayProcess(work, outer_config(inner.url, work / "policies", reference_mask_key(gateway)))
    yield process
    process.stop()


def cursor(process: GatewayProcess, user: str, **options: Any) -> Any:
    settings = {"catalog": "demo", "schema": "tpch", **options}
    return trino.dbapi.connect(host=process.host, port=process.port, user=user, **settings).cursor()


def rows(process: GatewayProcess, user: str, sql: str, **options: Any) -> list[tuple[Any, ...]]:
    c = cursor(process, user, **options)
    c.execute(sql)
    return [tuple(r) for r in c.fetchall()]


def audited(process: GatewayProcess, query_id: str, columns: str) -> tuple[Any, ...]:
    """The audit record of `query_id` (records are written shortly after a query ends)."""
    deadline = time.monotonic() + 10
    while True:
        found = rows(process, "audrey", f"SELECT {columns} FROM queries WHERE query_id = '{query_id}'",
                     catalog="gateway", schema="audit")
        if found or time.monotonic() > deadline:
            assert found, f"no audit record of {query_id}"
            return found[0]
        time.sleep(0.2)


def inner_query_of(outer: GatewayProcess, outer_query_id: str) -> str:
    (backend_query_id,) = audited(outer, outer_query_id, "backend_query_id")
    assert backend_query_id
    return str(backend_query_id)


# --- results -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", TPCH_CASES, ids=[q.stem for q in TPCH])
def test_tpch_through_the_chain_equals_the_inner_directly(query: Path, outer: GatewayProcess,
                                                          inner: GatewayProcess) -> None:
    sql = query.read_text()
    expected = rows(inner, "inspector", sql)
    assert rows(outer, "admin", sql) == expected and expected


@pytest.mark.parametrize("user", ["alice", "bob", "sam"])
@pytest.mark.parametrize("name", sorted(POLICY_QUERIES))
def test_the_outer_policies_apply_in_trinos_dialect(outer: GatewayProcess, gateway: GatewayProcess, user: str,
                                                    name: str) -> None:
    sql = POLICY_QUERIES[name]
    # the reference: the same policies and mask key on DuckDB, generated in DuckDB's dialect
    assert rows(outer, user, sql) == rows(gateway, user, sql)


def test_the_inner_runs_the_rewritten_trino_sql(outer: GatewayProcess, inner: GatewayProcess) -> None:
    c = cursor(outer, "alice")
    c.execute("SELECT c_name FROM customer WHERE c_custkey = 3")
    assert c.fetchall()[0][0] != "Customer#000000003"
    inner_id = inner_query_of(outer, c.query_id)
    user, sql = audited(inner, inner_id, "user_name, sql")
    assert user == "alice"
    assert "LOWER(TO_HEX(SHA256(TO_UTF8(" in sql and "c_nationkey IN (1, 2, 3)" in sql and "__gw_" not in sql


# --- who, what for, how much -------------------------------------------------------------------------------


def test_identity_source_and_client_tags_reach_the_inner(outer: GatewayProcess, inner: GatewayProcess) -> None:
    c = cursor(outer, "bob", source="nightly-report", client_tags=["team-eu", "batch"])
    c.execute("SELECT count(*) FROM nation")
    assert c.fetchall() == [[25]]
    inner_id = inner_query_of(outer, c.query_id)
    user, source, tags = audited(inner, inner_id, "user_name, source, client_tags")
    assert (user, source, sorted(json.loads(tags))) == ("bob", "nightly-report", ["batch", "team-eu"])


def test_cost_in_the_outer_ledger_comes_from_the_inner_stats(outer: GatewayProcess, inner: GatewayProcess) -> None:
    c = cursor(outer, "admin")
    c.execute((Path(__file__).parent / "tpch" / "q01.sql").read_text())
    c.fetchall()
    cpu_ms = c.stats["cpuTimeMillis"]
    inner_id = inner_query_of(outer, c.query_id)
    with httpx.Client(base_url=inner.url, timeout=10) as client:
        info = client.get(f"/v1/query/{inner_id}", headers={"X-Trino-User": "inspector"}).json()
    inner_cpu = float(info["queryStats"]["totalCpuTime"].removesuffix("s"))
    assert cpu_ms > 0 and abs(cpu_ms / 1000 - inner_cpu) <= 0.011
    deadline = time.monotonic() + 10
    charges: list[tuple[Any, ...]] = []
    while not charges and time.monotonic() < deadline:
        charges = rows(outer, "fiona", f"SELECT cost, figures, backend FROM charges WHERE query_id = '{c.query_id}'",
                       catalog="gateway", schema="billing")
        time.sleep(0.2)
    assert charges, "the query was not charged"
    cost, figures, backend = charges[0]
    figures = json.loads(figures) if isinstance(figures, str) else figures
    assert backend == "demo" and figures["cpu_seconds"] == pytest.approx(cpu_ms / 1000, abs=0.001)
    assert cost == pytest.approx(0.00005 * figures["cpu_seconds"] + 0.005 * (figures["processed_bytes"] or 0) / 1e9,
                                 rel=1e-3)


def test_a_scan_limit_asks_the_inner_for_its_io_plan(outer: GatewayProcess, inner: GatewayProcess) -> None:
    # The adhoc group has max_scan_bytes: the outer asks EXPLAIN (TYPE IO, FORMAT JSON) first. The inner
    # gateway's IO plans carry no byte estimates ("NaN"), so the limit is not checked and the query runs.
    marker = f"io-{time.time_ns()}"
    assert rows(outer, "admin", f"SELECT count(*), '{marker}' FROM orders", client_tags=["adhoc"]) == [(15000, marker)]
    explained = rows(inner, "inspector", "SELECT state FROM system.runtime.queries WHERE query LIKE "
                                         f"'EXPLAIN (TYPE IO, FORMAT JSON)%{marker}%'")
    assert explained == [("FINISHED",)]


# --- stopping queries --------------------------------------------------------------------------------------


def inner_running(inner: GatewayProcess, marker: str) -> list[tuple[Any, ...]]:
    return rows(inner, "inspector", f"SELECT query_id, state FROM system.runtime.queries WHERE query LIKE "
                                    f"'%{marker}%' AND query NOT LIKE '%system.runtime%' AND state = 'RUNNING'")


def wait_until_not_running(inner: GatewayProcess, marker: str, limit: float) -> float:
    began = time.monotonic()
    while inner_running(inner, marker) and time.monotonic() - began < limit:
        time.sleep(0.1)
    return time.monotonic() - began


def test_a_cancel_reaches_the_inner_gateway(outer: GatewayProcess, inner: GatewayProcess) -> None:
    marker = f"cancel-{time.time_ns()}"
    headers = {"X-Trino-User": "admin", "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}
    with httpx.Client(base_url=outer.url, timeout=10) as client:
        page = client.post("/v1/statement", content=SLOW_SQL.format(marker=marker), headers=headers).json()
        deadline = time.monotonic() + 15
        while not inner_running(inner, marker) and time.monotonic() < deadline:
            page = client.get(page["nextUri"], headers=headers).json()
        running = inner_running(inner, marker)
        assert len(running) == 1, page
        assert client.delete(page["nextUri"], headers=headers).status_code == 204
        assert wait_until_not_running(inner, marker, 10.0) < 5.0
    with httpx.Client(base_url=inner.url, timeout=10) as client:
        ended = client.get(f"/v1/query/{running[0][0]}", headers={"X-Trino-User": "inspector"}).json()
    assert ended["state"] == "FAILED"
    assert rows(outer, "admin", "SELECT count(*) FROM region") == [(5,)]  # its slot was given back


def test_the_groups_time_limit_stops_the_inner_query(outer: GatewayProcess, inner: GatewayProcess) -> None:
    marker = f"capped-{time.time_ns()}"
    began = time.monotonic()
    with pytest.raises(trino.exceptions.TrinoQueryError) as error:
        rows(outer, "alice", SLOW_SQL.format(marker=marker), client_tags=["limited"])
    assert error.value.error_name == "EXCEEDED_TIME_LIMIT"
    assert time.monotonic() - began < 8
    assert wait_until_not_running(inner, marker, 10.0) < 5.0


# --- a backend that goes away ------------------------------------------------------------------------------


@pytest.mark.slow
def test_inner_down_is_a_clear_error_and_not_ready(inner: GatewayProcess, gateway: GatewayProcess,
                                                   tmp_path: Path) -> None:
    proxy = TcpProxy(inner.port)
    password = "pw-never-shown-4c1e"
    config = outer_config(f"http://127.0.0.1:{proxy.port}", tmp_path / "policies", reference_mask_key(gateway),
                          password_env="TRINO_BACKEND_TEST_PASSWORD", allow_insecure_auth=True)
    process = GatewayProcess(tmp_path / "gw", config, env={"TRINO_BACKEND_TEST_PASSWORD": password})
    try:
        with httpx.Client(base_url=process.url, timeout=15) as client:
            assert client.get("/health/ready").status_code == 200
            assert rows(process, "admin", "SELECT count(*) FROM nation") == [(25,)]
            proxy.cut()
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["backends"]["demo"].startswith("Trino is unavailable")
            with pytest.raises(trino.exceptions.TrinoQueryError) as error:
                rows(process, "admin", "SELECT count(*) FROM nation")
            assert error.value.error_name == "BACKEND_ERROR" and "Trino is unavailable" in error.value.message
            proxy.restore()
            deadline = time.monotonic() + 10
            while client.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert rows(process, "admin", "SELECT count(*) FROM nation") == [(25,)]
    finally:
        process.stop()
        proxy.close()
    assert password not in process.log() + inner.log()


@pytest.mark.slow
def test_a_hanging_inner_times_out_with_a_clear_error(inner: GatewayProcess, gateway: GatewayProcess,
                                                      tmp_path: Path) -> None:
    with HangingProxy(inner.port) as proxy:
        config = outer_config(f"http://127.0.0.1:{proxy.port}", tmp_path / "policies", reference_mask_key(gateway),
                              request_timeout_seconds=2)
        process = GatewayProcess(tmp_path / "gw", config)
        try:
            assert rows(process, "admin", "SELECT count(*) FROM nation") == [(25,)]
            proxy.hang()
            began = time.monotonic()
            with pytest.raises(trino.exceptions.TrinoQueryError) as error:
                rows(process, "admin", "SELECT count(*) FROM region")
            assert "did not answer within 2s" in error.value.message and time.monotonic() - began < 10
            assert httpx.get(f"{process.url}/health/ready", timeout=15).status_code == 503
            proxy.resume()
        finally:
            process.stop()


@pytest.mark.slow
def test_the_service_user_authenticates_and_the_gateway_user_is_the_session_user(
        demo_database: Path, gateway: GatewayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An inner that checks credentials (API keys) and allows the service account to impersonate: the
    outer's queries authenticate as `svc` and run as the gateway user, as on Trino with impersonation."""
    config = inner_config(demo_database, tmp_path / "inner-policies")
    (tmp_path / "inner-policies" / "impersonation.yaml").write_text(yaml.safe_dump(
        {"impersonation": [{"when": {"groups": ["bi-service"]}, "new_user": "[a-z][a-z-]*", "allow": True}]}))
    keys = api_keys_file(tmp_path / "keys.json", {"svc": {"groups": ["bi-service"]}})
    config["identity"] = {"mode": "api_keys", "api_keys": {"file": str(tmp_path / "keys.json")}}
    inner = GatewayProcess(tmp_path / "inner", config)
    try:
        outer_settings = outer_config(inner.url, tmp_path / "policies", reference_mask_key(gateway), user="svc",
                                      password_env="TRINO_BACKEND_TEST_KEY", allow_insecure_auth=True)
        good = GatewayProcess(tmp_path / "good", outer_settings, env={"TRINO_BACKEND_TEST_KEY": keys["svc"]})
        try:
            c = cursor(good, "alice")
            c.execute("SELECT count(*) FROM customer")
            assert c.fetchall() == [[rows(gateway, "alice", "SELECT count(*) FROM customer")[0][0]]]
            inner_id = inner_query_of(good, c.query_id)
            basic = httpx.BasicAuth("svc", keys["svc"])
            info = httpx.get(f"{inner.url}/v1/query/{inner_id}", auth=basic, timeout=10).json()
            assert (info["session"]["user"], info["session"]["principal"]) == ("alice", "svc")
            # a wrong key (a gateway with it never becomes ready, so the backend is driven in process)
            wrong = TrinoBackend(name="demo", settings=TrinoSettings(
                url=inner.url, user="svc", catalog="demo", password_env="TRINO_BACKEND_WRONG_KEY",
                allow_insecure_auth=True))
            monkeypatch.setenv("TRINO_BACKEND_WRONG_KEY", "not-the-key")
            with pytest.raises(BackendError, match=r"refused the gateway's credentials \(HTTP 401\)"):
                asyncio.run(ping_once(wrong))
        finally:
            good.stop()
    finally:
        inner.stop()
    assert keys["svc"] not in good.log() + inner.log()


async def ping_once(backend: TrinoBackend) -> None:
    try:
        await backend.ping()
    finally:
        await backend.close()


@pytest.mark.slow
def test_a_rotated_secret_file_is_used_by_the_next_query_and_the_old_one_never_again(
        demo_database: Path, tmp_path: Path) -> None:
    """`password: {file: ...}` (a Kubernetes Secret mounted as a file): replacing the file's content changes
    the credentials of the next request, with no restart; after a refusal the file is read again at once."""
    from gateway.backends.credentials import SecretSpec, secret_source

    config = inner_config(demo_database, tmp_path / "inner-policies")
    keys = api_keys_file(tmp_path / "keys.json", {"svc": {"groups": ["bi-service"]}})
    config["identity"] = {"mode": "api_keys", "api_keys": {"file": str(tmp_path / "keys.json")}}
    inner = GatewayProcess(tmp_path / "inner", config)
    secret = tmp_path / "secret" / "password"
    secret.parent.mkdir()

    def mount(value: str) -> None:  # as the kubelet does: a new file, then an atomic rename over the old one
        staged = secret.with_suffix(".new")
        staged.write_text(value)
        staged.replace(secret)

    async def scenario() -> None:
        backend = TrinoBackend(
            name="demo", settings=TrinoSettings(url=inner.url, user="svc", catalog="demo", allow_insecure_auth=True),
            password=secret_source(SecretSpec(kind="file", file=secret, check_seconds=0.05)))
        try:
            mount(keys["svc"])
            await backend.ping()
            mount("an-old-key-revoked-since")
            await asyncio.sleep(0.1)
            with pytest.raises(BackendError, match=r"refused the gateway's credentials"):
                await backend.ping()  # the new content is what was sent: the previous key is not reused
            mount(keys["svc"])
            await backend.ping()  # refused once, so the file is read again without waiting for its check
        finally:
            await backend.close()

    try:
        asyncio.run(scenario())
    finally:
        inner.stop()
    assert keys["svc"] not in inner.log()


def test_a_trino_password_needs_https_unless_insecure_auth_is_allowed(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load_settings

    path = tmp_path / "gateway.yaml"
    backend = {"type": "trino", "url": "http://trino.internal:8080", "user": "svc",
               "password": {"file": str(tmp_path / "password")}}
    path.write_text(yaml.safe_dump({"backends": {"t": backend}}))
    with pytest.raises(ConfigError, match="must be https://"):
        load_settings(path, environ={})
    path.write_text(yaml.safe_dump({"backends": {"t": {**backend, "allow_insecure_auth": True}}}))
    settings = load_settings(path, environ={})
    assert settings.backends[0].password is not None and settings.backends[0].trino is not None
