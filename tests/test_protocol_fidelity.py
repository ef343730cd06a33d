"""The Trino protocol as Trino serves it, on the raw wire: QUEUED first responses, /v1/query/{id} (GET and
DELETE) after a query ended and only for its owner, /v1/status, /v1/node, error objects with
errorLocation and failureInfo."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.testing import GatewayProcess, follow_statement
from tests.conftest import demo_config

USERS = ("alice", "bob", "sam", "admin", "audrey", "fiona", "mallory")
ADMINS = {"admin"}  # workload.admin_groups: [admins] (policies/dev_users.yaml)


def headers(user: str) -> dict[str, str]:
    return {"X-Trino-User": user, "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch",
            "X-Trino-Source": "fidelity-test"}


def submit(gateway: GatewayProcess, sql: str, user: str = "alice") -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/statement", content=sql, headers=headers(user), timeout=30)


@pytest.fixture(scope="module")
def inline(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("inline"),
                             demo_config(demo_database, protocol={"inline_first_page": True}))
    yield process
    process.stop()


def test_first_response_never_carries_rows_and_always_a_next_uri(gateway: GatewayProcess) -> None:
    for sql in ("SELECT 1", "SELECT * FROM nation", "SELEC 1", "SHOW CATALOGS", "SELECT * FROM nope"):
        first = submit(gateway, sql).json()
        assert first["stats"]["state"] == "QUEUED", (sql, first)
        assert {"id", "infoUri", "nextUri", "stats", "warnings"} <= set(first)
        assert "data" not in first and "error" not in first
        final = follow_statement(submit(gateway, sql), headers=headers("alice"))
        assert final["stats"]["state"] in ("FINISHED", "FAILED")


def test_inline_first_page_is_an_opt_in(inline: GatewayProcess) -> None:
    body = submit(inline, "SELECT n_name FROM nation WHERE n_nationkey = 1").json()
    assert body["data"] == [["ARGENTINA"]] and body["stats"]["state"] == "FINISHED" and "nextUri" not in body


def test_query_info_after_the_query_ended(gateway: GatewayProcess) -> None:
    final = follow_statement(submit(gateway, "SELECT count(*) FROM nation"), headers=headers("alice"))
    info = httpx.get(final["infoUri"], headers=headers("alice")).json()
    assert info["queryId"] == final["id"] and info["state"] == "FINISHED"
    assert info["query"] == "SELECT count(*) FROM nation" and info["session"]["user"] == "alice"
    assert info["queryStats"]["endTime"] is not None and "failureInfo" not in info
    failed = follow_statement(submit(gateway, "SELECT * FROM\nnope"), headers=headers("alice"))
    info = httpx.get(failed["infoUri"], headers=headers("alice")).json()
    assert info["state"] == "FAILED" and info["errorCode"]["name"] == "TABLE_NOT_FOUND"
    assert info["failureInfo"]["type"] and info["failureInfo"]["message"] == failed["error"]["message"]


def test_error_objects_carry_location_and_failure_info(gateway: GatewayProcess) -> None:
    error = follow_statement(submit(gateway, "SELECT a,\n  b FROM nation WHERE"), headers=headers("alice"))["error"]
    assert error["errorName"] == "SYNTAX_ERROR" and error["errorLocation"]["lineNumber"] == 2
    assert error["failureInfo"]["errorLocation"] == error["errorLocation"]
    assert error["failureInfo"]["type"] == "io.trino.spi.TrinoException"
    assert error["message"].startswith("line 2:")


def test_delete_query_cancels_a_running_query(gateway: GatewayProcess) -> None:
    slow = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x'"
    first = submit(gateway, slow).json()
    assert httpx.delete(f"{gateway.url}/v1/query/{first['id']}", headers=headers("bob")).status_code == 404
    response = httpx.delete(f"{gateway.url}/v1/query/{first['id']}", headers=headers("alice"))
    assert response.status_code == 204
    final = follow_statement(httpx.get(first["nextUri"], headers=headers("alice")), headers=headers("alice"))
    assert final["error"]["errorName"] == "USER_CANCELED"


def test_status_and_node(gateway: GatewayProcess) -> None:
    status = httpx.get(f"{gateway.url}/v1/status").json()
    assert status["coordinator"] is True and status["nodeVersion"]["version"] == gateway.version()
    assert status["nodeId"] and status["uptime"]
    nodes = httpx.get(f"{gateway.url}/v1/node").json()
    assert [n["nodeId"] for n in nodes] == [status["nodeId"]]


def _per_query_requests(gateway: GatewayProcess, first: dict[str, Any]) -> list[tuple[str, str]]:
    return [("GET", first["infoUri"]), ("GET", f"{gateway.url}/v1/query/{first['id']}"),
            ("GET", first["nextUri"]), ("DELETE", first["nextUri"]),
            ("DELETE", f"{gateway.url}/v1/query/{first['id']}")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(owner=st.sampled_from(USERS), caller=st.sampled_from(USERS), which=st.integers(0, 4))
def test_per_query_endpoints_answer_only_the_owner_or_an_admin(gateway: GatewayProcess, owner: str, caller: str,
                                                              which: int) -> None:
    """Every per-query request by anyone but the owner or an admin: 404 'Query not found', exactly as for a
    query that does not exist, and audited; the owner's and admins' work."""
    marker = uuid.uuid4().hex[:8]
    first = submit(gateway, f"SELECT '{marker}' AS m", user=owner).json()
    method, uri = _per_query_requests(gateway, first)[which]
    response = httpx.request(method, uri, headers=headers(caller), timeout=30)
    allowed = caller == owner or caller in ADMINS
    if allowed:
        assert response.status_code in (200, 204), response.text
    else:
        assert response.status_code == 404
        body = response.json()
        assert body["error"]["errorName"] == "NOT_FOUND" and marker not in response.text
        unknown = httpx.request(method, uri.replace(first["id"], "20200101_000000_00000_zzzzz"),
                                headers=headers(caller), timeout=30)
        assert unknown.status_code == 404
        assert body["error"]["message"] == unknown.json()["error"]["message"]
    follow_statement(httpx.get(first["nextUri"], headers=headers(owner), timeout=30), headers=headers(owner))


def test_query_info_needs_an_identity(gateway: GatewayProcess) -> None:
    first = submit(gateway, "SELECT 1").json()
    assert httpx.get(first["infoUri"]).status_code == 401  # no X-Trino-User, no credentials: nobody's
    follow_statement(httpx.get(first["nextUri"], headers=headers("alice")), headers=headers("alice"))


def test_refused_per_query_requests_are_audited(demo_database: Path, tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "audit.db"
    with GatewayProcess(tmp_path, demo_config(demo_database, audit={"store": f"sqlite:///{database}"})) as gateway:
        first = submit(gateway, "SELECT 1", user="alice").json()
        assert httpx.get(first["infoUri"], headers=headers("bob")).status_code == 404
        follow_statement(httpx.get(first["nextUri"], headers=headers("alice")), headers=headers("alice"))
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT user_name, error_name, reason FROM queries WHERE user_name = 'bob'"
                                  ).fetchall()
    assert rows and rows[0][1] == "NOT_FOUND" and "not a query of the caller's" in rows[0][2]


def test_runtime_queries_lists_only_the_callers_queries(gateway: GatewayProcess) -> None:
    marker = uuid.uuid4().hex[:8]
    follow_statement(submit(gateway, f"SELECT '{marker}-bob'", user="bob"), headers=headers("bob"))
    listing = "SELECT \"user\", query FROM system.runtime.queries WHERE query LIKE '%" + marker + "%'"

    def seen_by(user: str) -> set[str]:
        rows = follow_statement(submit(gateway, listing, user=user), headers=headers(user))["data"]
        return {row[0] for row in rows}

    assert seen_by("alice") == {"alice"}  # only the listing query itself
    assert seen_by("bob") == {"bob"}
    assert seen_by("admin") == {"alice", "bob", "admin"}


@pytest.mark.slow
def test_query_history_stays_within_its_bounds(demo_database: Path, tmp_path: Path) -> None:
    """Many queries through a gateway with a small history: the oldest ended queries are forgotten (404, as
    for any unknown query), the newest kept, and system.runtime.queries never lists more than the bound."""
    config = demo_config(demo_database, protocol={"query_history_max": 50, "query_history_seconds": 600})
    with GatewayProcess(tmp_path, config) as gateway, httpx.Client(timeout=30) as http:
        ids = []
        for n in range(400):
            first = http.post(f"{gateway.url}/v1/statement", content=f"SELECT {n}", headers=headers("alice"))
            ids.append(follow_statement(first, headers=headers("alice"), client=http)["id"])
        assert http.get(f"{gateway.url}/v1/query/{ids[0]}", headers=headers("alice")).status_code == 404
        assert http.get(f"{gateway.url}/v1/query/{ids[-1]}", headers=headers("alice")).json()["state"] == "FINISHED"
        listed = follow_statement(http.post(f"{gateway.url}/v1/statement", headers=headers("admin"),
                                            content="SELECT count(*) FROM system.runtime.queries"),
                                  headers=headers("admin"), client=http)["data"][0][0]
        assert listed <= 51  # the bound, plus the listing query itself while it runs
