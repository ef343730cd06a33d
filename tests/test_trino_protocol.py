"""The Trino HTTP protocol as clients parse it, checked on the raw wire with httpx."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from gateway.testing import follow_statement
from tests.conftest import GatewayProcess

HEADERS = {"X-Trino-User": "alice", "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}


def post(gateway: GatewayProcess, sql: str | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/statement", content=sql, headers=headers or HEADERS, timeout=30)


def answer(gateway: GatewayProcess, sql: str | bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The query's outcome as a client sees it after following every nextUri."""
    return follow_statement(post(gateway, sql, headers), headers=headers or HEADERS)


def run_all(gateway: GatewayProcess, sql: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every response of one query, following nextUri to the end."""
    response = post(gateway, sql, headers)
    assert response.status_code == 200, response.text
    pages = [response.json()]
    while "nextUri" in pages[-1]:
        response = httpx.get(pages[-1]["nextUri"], timeout=30)
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return pages


def test_results_are_paged_with_bounded_pages(gateway: GatewayProcess) -> None:
    pages = run_all(gateway, "SELECT l_orderkey, l_linenumber FROM lineitem")
    sizes = [len(p.get("data", [])) for p in pages]
    assert sum(sizes) == 60175
    assert max(sizes) <= 2000  # the gateway fixture's protocol.page_rows
    assert len([s for s in sizes if s]) >= 30
    assert pages[-1]["stats"]["state"] == "FINISHED"
    assert "nextUri" not in pages[-1]
    # ids and the fields clients read without defaults are on every response
    for page in pages:
        assert page["id"] == pages[0]["id"]
        assert page["infoUri"].endswith(page["id"])
        assert isinstance(page["warnings"], list)
        if "data" in page:
            assert "columns" in page


def test_query_id_has_trino_shape(gateway: GatewayProcess) -> None:
    pages = run_all(gateway, "SELECT 1")
    assert re.fullmatch(r"\d{8}_\d{6}_\d{5}_[a-z0-9]{5}", pages[0]["id"])


def test_first_response_is_queued_with_next_uri_as_trino(gateway: GatewayProcess) -> None:
    """trino-js-client reads rows only after the first response; presto-client requires its nextUri."""
    first = post(gateway, "SELECT n_name FROM nation WHERE n_nationkey = 1").json()
    assert first["stats"]["state"] == "QUEUED" and first["stats"]["queued"] is True
    assert "data" not in first and "columns" not in first
    assert first["nextUri"].startswith(gateway.url) and first["infoUri"].endswith(first["id"])
    body = answer(gateway, "SELECT n_name FROM nation WHERE n_nationkey = 1")
    assert body["data"] == [["ARGENTINA"]] and body["stats"]["state"] == "FINISHED"


def test_missing_or_plain_text_content_type_is_accepted(gateway: GatewayProcess) -> None:
    for content_type in (None, "text/plain; charset=utf-8"):
        headers = dict(HEADERS)
        if content_type:
            headers["Content-Type"] = content_type
        request = httpx.Request("POST", f"{gateway.url}/v1/statement", content=b"SELECT 42", headers=headers)
        if content_type is None:
            request.headers.pop("Content-Type", None)
        with httpx.Client() as client:
            response = client.send(request)
        assert follow_statement(response, headers=HEADERS)["data"] == [[42]]


def test_retrying_a_page_returns_the_same_page(gateway: GatewayProcess) -> None:
    first = post(gateway, "SELECT l_orderkey FROM lineitem ORDER BY l_orderkey").json()
    next_uri = first["nextUri"]
    one = httpx.get(next_uri).json()
    again = httpx.get(next_uri).json()
    assert one == again
    httpx.delete(next_uri)


def test_unknown_and_tampered_next_uri_get_404_json(gateway: GatewayProcess) -> None:
    first = post(gateway, "SELECT l_orderkey FROM lineitem").json()
    tampered = re.sub(r"/executing/([^/]+)/[^/]+/", r"/executing/\1/not-the-slug/", first["nextUri"])
    for uri in (tampered, f"{gateway.url}/v1/statement/executing/20200101_000000_00000_xxxxx/abc/1"):
        response = httpx.get(uri)
        assert response.status_code == 404
        assert response.json()["error"]["errorName"] == "NOT_FOUND"
    httpx.delete(first["nextUri"])


def test_finished_query_uri_is_gone(gateway: GatewayProcess) -> None:
    pages = run_all(gateway, "SELECT l_orderkey FROM lineitem LIMIT 5000")
    last_uri = pages[-2]["nextUri"]
    token = int(last_uri.rsplit("/", 1)[1])
    beyond = last_uri.rsplit("/", 1)[0] + f"/{token + 1}"
    response = httpx.get(beyond)
    assert response.status_code == 404
    assert "error" in response.json()


def test_column_type_signatures(gateway: GatewayProcess) -> None:
    body = answer(gateway, "SELECT c_name, c_acctbal, CAST(c_name AS varchar(10)) AS short, "
                           "CAST('2024-01-01 10:00:00' AS timestamp(3)) AS ts, c_custkey FROM customer LIMIT 1")
    columns = {c["name"]: c for c in body["columns"]}
    assert columns["c_name"]["typeSignature"] == {"rawType": "varchar",
                                                  "arguments": [{"kind": "LONG", "value": 2147483647}]}
    assert columns["c_acctbal"]["type"] == "decimal(15,2)"
    assert columns["c_acctbal"]["typeSignature"]["arguments"] == [{"kind": "LONG", "value": 15},
                                                                  {"kind": "LONG", "value": 2}]
    assert columns["ts"]["typeSignature"]["rawType"] == "timestamp"
    assert columns["ts"]["typeSignature"]["arguments"][0]["kind"] == "LONG"
    assert columns["c_custkey"]["typeSignature"] == {"rawType": "bigint", "arguments": []}
    assert isinstance(body["data"][0][1], str)  # decimals travel as strings


def test_values_are_encoded_as_trino_does(gateway: GatewayProcess) -> None:
    body = run_all(gateway, "SELECT c_double, c_double_special, c_double_infinity, c_decimal, c_varbinary, c_date, "
                            "c_timestamp, c_timestamp_ms, c_array, c_map, c_row, c_interval "
                            "FROM samples.all_types ORDER BY c_date DESC")
    row = body[-1].get("data") or body[0]["data"]
    first = row[0]
    assert first[0] == 2.25
    assert first[1] == "NaN"
    assert first[2] == "Infinity"
    assert first[3] == "123.45"
    assert first[4] == "AAH/"
    assert first[5] == "2024-02-29"
    assert first[6] == "2024-02-29 13:45:30.123456"
    assert first[7] == "2024-02-29 13:45:30.123"
    assert first[8] == [1, 2, 3]
    assert first[9] == {"k1": 1, "k2": 2}
    assert first[10] == [1, "b"]
    assert first[11] == "1 02:00:03.000"
    assert row[1][1] == "-Infinity"


def test_stats_fields(gateway: GatewayProcess) -> None:
    stats = answer(gateway, "SELECT count(*) FROM orders")["stats"]
    for key in ("state", "queued", "scheduled", "nodes", "totalSplits", "queuedSplits", "runningSplits",
                "completedSplits", "cpuTimeMillis", "wallTimeMillis", "queuedTimeMillis", "elapsedTimeMillis",
                "processedRows", "processedBytes", "physicalInputBytes", "peakMemoryBytes", "spilledBytes"):
        assert key in stats
    assert stats["state"] == "FINISHED"


def test_info_endpoint(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/v1/info")
    assert response.headers["content-type"].startswith("application/json")
    info = response.json()
    assert set(info) >= {"nodeVersion", "environment", "coordinator", "starting", "uptime"}
    assert info["coordinator"] is True and info["starting"] is False
    assert isinstance(info["nodeVersion"]["version"], str)


def test_head_statement_for_connection_checks(gateway: GatewayProcess) -> None:
    assert httpx.head(f"{gateway.url}/v1/statement", headers=HEADERS).status_code == 200


def test_errors_have_trino_fields_and_location(gateway: GatewayProcess) -> None:
    body = answer(gateway, "SELECT * FROM")
    error = body["error"]
    assert body["stats"]["state"] == "FAILED"
    assert error["errorName"] == "SYNTAX_ERROR" and error["errorCode"] == 1 and error["errorType"] == "USER_ERROR"
    assert error["errorLocation"]["lineNumber"] == 1
    assert "failureInfo" in error and "stack" not in error["message"]


@pytest.mark.parametrize(("sql", "name"), [
    ("SELECT * FROM nope", "TABLE_NOT_FOUND"),
    ("SELECT * FROM nope.nation", "SCHEMA_NOT_FOUND"),
    ("SELECT * FROM nope.tpch.nation", "CATALOG_NOT_FOUND"),
    ("SELECT no_such_column FROM nation", "COLUMN_NOT_FOUND"),
    ("INSERT INTO nation VALUES (1, 'x', 1, 'y')", "READ_ONLY_VIOLATION"),
    ("DROP TABLE nation", "READ_ONLY_VIOLATION"),
    ("SELECT 1; SELECT 2", "SYNTAX_ERROR"),
    ("SELEC 1", "SYNTAX_ERROR"),
    ("SELECT * FROM demo.tpch.nation, system.jdbc.tables", "NOT_SUPPORTED"),
    ("GRANT SELECT ON nation TO bob", "NOT_SUPPORTED"),
])
def test_query_errors_are_reported_as_failed_queries(gateway: GatewayProcess, sql: str, name: str) -> None:
    response = post(gateway, sql)
    assert response.status_code == 200
    body = follow_statement(response, headers=HEADERS)
    assert body["error"]["errorName"] == name, body["error"]
    assert body["stats"]["state"] == "FAILED"


def test_unqualified_table_without_session_schema(gateway: GatewayProcess) -> None:
    body = answer(gateway, "SELECT * FROM nation", {"X-Trino-User": "alice"})
    assert body["error"]["errorName"] == "MISSING_SCHEMA_NAME"


@pytest.mark.parametrize(("body", "headers", "status", "text"), [
    (b"", HEADERS, 400, "empty"),
    (b"   \n", HEADERS, 400, "empty"),
    (b"SELECT '\xff\xfe'", HEADERS, 400, "UTF-8"),
    (b"SELECT 1", {"X-Trino-Catalog": "demo"}, 400, "User must be set"),
    (b"SELECT 1", {**HEADERS, "X-Trino-Session": "novalue"}, 400, "X-Trino-Session"),
    (b"SELECT 1", {**HEADERS, "X-Trino-Time-Zone": "Mars/Olympus"}, 400, "time zone"),
    (b"SELECT 1", {**HEADERS, "X-Trino-Prepared-Statement": "=x"}, 400, "Prepared-Statement"),
    (b"SELECT 1", {**HEADERS, "X-Trino-Catalog": 'bad"name'}, 400, "Catalog"),
])
def test_bad_requests_get_clear_errors(gateway: GatewayProcess, body: bytes, headers: dict[str, str], status: int,
                                       text: str) -> None:
    response = post(gateway, body, headers)
    assert response.status_code == status
    assert text in response.json()["error"]["message"]
    assert "Traceback" not in response.text


def test_body_over_the_limit_is_refused(gateway: GatewayProcess) -> None:
    big = b"SELECT '" + b"x" * (1024 * 1024 + 10) + b"'"
    response = post(gateway, big)
    assert response.status_code == 413
    assert response.json()["error"]["errorName"] == "QUERY_TEXT_TOO_LARGE"
    # and the gateway keeps serving
    assert answer(gateway, "SELECT 1")["data"] == [[1]]


def test_unknown_endpoint_is_a_json_404(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["errorName"] == "NOT_FOUND"


def test_delete_cancels_the_backend_query(gateway: GatewayProcess) -> None:
    slow = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x'"
    first = post(gateway, slow).json()
    assert "nextUri" in first, first
    deadline = time.monotonic() + 10
    while gateway.metric("gateway_backend_busy_threads", 'backend="demo"') < 1:
        assert time.monotonic() < deadline, "the slow query never reached DuckDB"
        time.sleep(0.05)
    cancelled_before = gateway.metric("gateway_backend_cancellations_total", 'backend="demo"')
    response = httpx.delete(first["nextUri"])
    assert response.status_code == 204
    deadline = time.monotonic() + 5
    while gateway.metric("gateway_backend_busy_threads", 'backend="demo"') > 0:
        assert time.monotonic() < deadline, "DuckDB kept working after the cancel"
        time.sleep(0.05)
    assert gateway.metric("gateway_backend_cancellations_total", 'backend="demo"') == cancelled_before + 1
    after = httpx.get(first["nextUri"])
    assert after.status_code in (200, 404)
    if after.status_code == 200:
        assert after.json()["error"]["errorName"] == "USER_CANCELED"


def test_metrics_and_health(gateway: GatewayProcess) -> None:
    post(gateway, "SELECT 1")
    assert gateway.metric("gateway_queries_total", 'outcome="finished"') >= 1
    assert gateway.metric("gateway_query_duration_seconds_count") >= 1
    assert httpx.get(f"{gateway.url}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
