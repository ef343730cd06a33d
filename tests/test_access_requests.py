"""Just-in-time access end to end: two gateway processes on one audit store (SQLite file; PostgreSQL too),
the real trino client, the `gateway access` CLI and the /api/access endpoints.

A denied user asks for access, cannot approve it themself, an approver approves on one replica, the query
succeeds on both, the grant expires and the query is denied again; every step is visible to auditors in
gateway.audit.*. Unmasking grants are revoked early, and neither the plan nor the result cache keeps serving
what the grant allowed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino
from trino.exceptions import TrinoUserError

from gateway.cli import main
from tests.conftest import GatewayProcess, demo_config
from tests.pg_warehouse import available, psql

POLL = 0.4  # access_requests.poll_seconds


def pair(workdir: Path, database: Path, store: str) -> list[GatewayProcess]:
    """Two replicas on one audit store, started side by side."""
    def start(name: str) -> GatewayProcess:
        return GatewayProcess(workdir / name, demo_config(
            database, audit={"store": store, "spool_dir": str(workdir / name / "spool")},
            access_requests={"poll_seconds": POLL}, server={"shutdown_grace_seconds": 1}))

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(start, ("a", "b")))


@pytest.fixture(scope="module")
def replicas(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    workdir = tmp_path_factory.mktemp("access")
    processes = pair(workdir, demo_database, f"sqlite:///{workdir / 'audit.db'}")
    yield processes
    for process in processes:
        process.stop()


def query(process: GatewayProcess, sql: str, user: str) -> list[Any]:
    cursor = trino.dbapi.connect(host=process.host, port=process.port, user=user, catalog="demo",
                                 schema="tpch").cursor()
    cursor.execute(sql)
    return list(cursor.fetchall())


def denied(process: GatewayProcess, sql: str, user: str) -> bool:
    try:
        query(process, sql, user)
    except TrinoUserError as error:
        assert error.error_name == "PERMISSION_DENIED", error.message
        return True
    return False


def api(process: GatewayProcess, user: str, path: str = "", body: dict[str, Any] | None = None,
        **params: str) -> httpx.Response:
    url = f"{process.url}/api/access/requests{path}"
    headers = {"X-Trino-User": user}
    if body is None:
        return httpx.get(url, headers=headers, params=params, timeout=10)
    return httpx.post(url, headers=headers, json=body, timeout=10)


def cli(capsys: pytest.CaptureFixture[str], process: GatewayProcess, user: str, *args: str) -> tuple[int, str]:
    code = main(["access", *args, "--server", process.url, "--user", user, "--json"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def eventually(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_denied_user_requests_is_approved_reads_and_is_denied_again_after_expiry(
        replicas: list[GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = replicas
    sql = "SELECT count(*) FROM nation"
    assert denied(a, sql, "fiona") and denied(b, sql, "fiona")

    code, out = cli(capsys, a, "fiona", "request", "--table", "tpch.nation", "--reason", "month-end close",
                    "--for", "4s")
    assert code == 0, out
    asked = json.loads(out)
    assert (asked["status"], asked["table"], asked["requester"]) == ("pending", "demo.tpch.nation", "fiona")

    code, out = cli(capsys, a, "fiona", "approve", asked["id"])  # never one's own
    assert code == 1 and "cannot approve their own access request" in out
    assert api(a, "alice", f"/{asked['id']}/approve", {}).status_code == 404  # not an approver: not even seen
    pending = api(b, "admin", status="pending").json()["requests"]
    assert asked["id"] in [r["id"] for r in pending]  # the other replica lists it for the approver

    approved = api(b, "admin", f"/{asked['id']}/approve", {"comment": "ok for today"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == "admin"
    expires_at = time.monotonic() + 4

    assert query(b, sql, "fiona") == [[25]]  # where it was approved: at once
    assert eventually(lambda: not denied(a, sql, "fiona"), within=POLL * 5)  # elsewhere within the poll
    assert not denied(a, sql, "alice")  # everyone else is as before
    assert denied(a, sql, "audrey")  # and another denied user gets nothing from fiona's grant

    time.sleep(max(0.0, expires_at - time.monotonic()) + 0.2)
    assert denied(a, sql, "fiona") and denied(b, sql, "fiona")  # the clock ends it on every replica

    def audited() -> bool:
        events = query(a, "SELECT event, actor FROM gateway.audit.access_request_events WHERE request_id = "
                          f"'{asked['id']}' ORDER BY id", "audrey")
        return [e[0] for e in events] == ["requested", "approved", "expired"]

    assert eventually(audited, within=POLL * 6)
    status = query(b, f"SELECT status, requester, decided_by, comment FROM gateway.audit.access_requests "
                      f"WHERE id = '{asked['id']}'", "audrey")
    assert status == [["expired", "fiona", "admin", "ok for today"]]
    uses = query(a, "SELECT decision, rules_applied FROM gateway.audit.queries WHERE user_name = 'fiona' "
                    f"AND rules_applied LIKE '%grant:{asked['id']}%'", "audrey")
    assert uses and {u[0] for u in uses} == {"success"}  # every use audited with the grant named
    assert denied(a, "SELECT count(*) FROM gateway.audit.access_requests", "fiona")
    assert a.metric("gateway_access_requests_total", 'outcome="requested"') >= 1
    assert b.metric("gateway_access_requests_total", 'outcome="approved"') >= 1
    assert a.metric("gateway_access_grants_active") == 0


def test_an_unmasking_grant_is_revoked_early_and_no_cache_keeps_it(
        replicas: list[GatewayProcess], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = replicas
    sql = "SELECT c_custkey, c_phone FROM customer ORDER BY c_custkey LIMIT 3"
    masked = query(a, sql, "alice")
    clear = {row[0]: row[1] for row in query(a, "SELECT c_custkey, c_phone FROM customer", "admin")}
    assert all(clear[key] != phone for key, phone in masked)

    created = api(a, "alice", body={"table": "demo.tpch.customer", "columns": ["c_phone"], "reason": "fraud case",
                                    "duration": "1h"})
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    too_long = api(a, "alice", body={"table": "demo.tpch.customer", "columns": ["c_phone"], "reason": "x",
                                     "duration": "5h"})
    assert too_long.status_code == 400 and "4h" in too_long.json()["error"]["message"]
    code, _ = cli(capsys, a, "admin", "approve", request_id)
    assert code == 0

    unmasked = [[key, clear[key]] for key, _ in masked]
    assert query(a, sql, "alice") == unmasked
    assert eventually(lambda: query(b, sql, "alice") == unmasked, within=POLL * 5)
    assert query(a, sql, "bob") != [[key, clear[key]] for key, _ in query(a, sql, "bob")]  # bob: still masked

    code, out = cli(capsys, b, "admin", "revoke", request_id, "--comment", "case closed")
    assert code == 0 and json.loads(out)["status"] == "revoked"
    assert query(b, sql, "alice") == masked  # the same statement again: re-planned and masked, not cached
    assert eventually(lambda: query(a, sql, "alice") == masked, within=POLL * 5)
    code, out = cli(capsys, a, "alice", "list", "--status", "revoked")
    assert code == 0 and request_id in out
    code, out = cli(capsys, a, "admin", "revoke", request_id)
    assert code == 1 and "revoked" in out


def test_api_errors_are_clear_and_audited(replicas: list[GatewayProcess]) -> None:
    a, _ = replicas
    for body, message in (({"table": "tpch.nation", "reason": "x", "duration": "soon"}, "duration"),
                          ({"table": "nation", "reason": "x", "duration": "1h"}, "[catalog.]schema.table"),
                          ({"table": "tpch.nation", "duration": "1h"}, "reason"),
                          ({"table": "tpch.nope", "reason": "x", "duration": "1h"}, "does not exist")):
        response = api(a, "fiona", body=body)
        assert response.status_code in (400, 404), response.text
        assert message in response.json()["error"]["message"]
    assert api(a, "fiona", status="bogus").status_code == 400
    assert httpx.post(f"{a.url}/api/access/requests", content=b"[1", headers={"X-Trino-User": "fiona"}).status_code \
        == 400
    assert httpx.post(f"{a.url}/api/access/requests/x/approve", json={}).status_code == 401

    def refusals() -> list[Any]:
        return query(a, "SELECT count(*) FROM gateway.audit.queries WHERE user_name = 'fiona' AND "
                        "statement_type = 'access_request_api' AND decision = 'failed'", "audrey")
    assert eventually(lambda: refusals()[0][0] >= 5, within=3)


@pytest.mark.slow  # two more gateway processes; the SQLite pair above proves the same in the fast suite
@pytest.mark.skipif(not available(), reason="PostgreSQL on 127.0.0.1:5432 is required")
def test_a_grant_approved_on_one_replica_is_in_force_on_another_with_postgresql(
        demo_database: Path, tmp_path: Path) -> None:
    name = f"access_test_{uuid.uuid4().hex[:8]}"
    psql(f"CREATE DATABASE {name}")
    processes: list[GatewayProcess] = []
    try:
        processes = pair(tmp_path, demo_database, f"postgresql://postgres@127.0.0.1:5432/{name}")
        a, b = processes
        sql = "SELECT count(*) FROM region"
        assert denied(b, sql, "audrey")
        asked = api(a, "audrey", body={"table": "tpch.region", "reason": "audit sample", "duration": "60"}).json()
        assert api(b, "audrey", f"/{asked['id']}/approve", {}).status_code == 403  # own request
        assert api(b, "admin", f"/{asked['id']}/approve", {}).status_code == 200
        assert eventually(lambda: not denied(a, sql, "audrey"), within=POLL * 5)
        assert api(a, "admin", f"/{asked['id']}/revoke", {}).status_code == 200
        assert eventually(lambda: denied(b, sql, "audrey"), within=POLL * 5)
        rows = query(a, f"SELECT status FROM gateway.audit.access_requests WHERE id = '{asked['id']}'", "audrey")
        assert rows == [["revoked"]]
    finally:
        for process in processes:
            process.stop()
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
