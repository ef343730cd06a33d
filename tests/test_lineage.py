"""OpenLineage events (gateway/lineage/, docs/lineage.md), end to end: real gateways, the real trino client,
a real HTTP server receiving the events, the file transport; off by default; a dead endpoint neither fails
nor slows queries (its events are counted as dropped or failed)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trino

from gateway.config import ConfigError, load_settings
from gateway.testing import GatewayProcess, free_port
from tests.conftest import demo_config

CUSTOMER_BY_NATION = (
    "SELECT n.n_name AS nation, count(*) AS customers, sum(c.c_acctbal) AS balance, max(c.c_phone) AS phone "
    "FROM customer c JOIN nation n ON c.c_nationkey = n.n_nationkey WHERE c.c_mktsegment = 'BUILDING' "
    "GROUP BY n.n_name ORDER BY n.n_name")


class LineageServer:
    """A lineage server: records each POSTed event (JSON) and answers 200."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with received._lock:
                    received.events.append(json.loads(body))
                    received.paths.append(self.path)
                    received.authorizations.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def run(self, query_id: str, count: int = 2, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The events of one query's run, once `count` of them arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [e for e in self.events
                         if e["run"]["facets"].get("queryGateway", {}).get("queryId") == query_id]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(found)} lineage events of {query_id} arrived, expected {count}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[LineageServer]:
    server = LineageServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def lineage_gateway(demo_database: Path, receiver: LineageServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = demo_config(demo_database, lineage={
        "enabled": True, "transport": "http", "url": receiver.url, "namespace": "gateway-test",
        "api_key_env": "TEST_LINEAGE_KEY", "producer": "https://example.com/query-gateway"})
    with GatewayProcess(tmp_path_factory.mktemp("lineage"), config, env={"TEST_LINEAGE_KEY": "s3cret-key"}) as gw:
        yield gw


def query(gateway: GatewayProcess, sql: str, user: str = "alice") -> tuple[str, list[Any]]:
    connection = trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo",
                                     schema="tpch", source="lineage-test")
    cursor = connection.cursor()
    cursor.execute(sql)
    rows = cursor.fetchall()
    return cursor.query_id, rows


def by_type(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["eventType"]: e for e in events}


def test_join_and_aggregate_events_name_inputs_column_lineage_and_governance(
        lineage_gateway: GatewayProcess, receiver: LineageServer, demo_database: Path) -> None:
    query_id, rows = query(lineage_gateway, CUSTOMER_BY_NATION)
    assert rows
    events = by_type(receiver.run(query_id))
    assert set(events) == {"START", "COMPLETE"}
    start, end = events["START"], events["COMPLETE"]
    assert start["run"]["runId"] == end["run"]["runId"]
    assert start["eventTime"] <= end["eventTime"]
    assert end["producer"] == "https://example.com/query-gateway"
    assert end["job"]["namespace"] == "gateway-test"
    assert end["job"]["name"].startswith("lineage-test.")
    # the client's SQL, literals redacted; never the rewritten SQL with alice's nations bound into it
    sql = end["job"]["facets"]["sql"]["query"]
    assert "FROM customer AS c JOIN nation AS n" in sql and "c_mktsegment = ?" in sql
    assert "BUILDING" not in sql and "IN (1, 2, 3)" not in sql

    namespace = f"duckdb://{demo_database.resolve()}"
    inputs = {(d["namespace"], d["name"]) for d in end["inputs"]}
    assert inputs == {(namespace, "demo.tpch.customer"), (namespace, "demo.tpch.nation")}
    schema = {d["name"]: {f["name"] for f in d["facets"]["schema"]["fields"]} for d in end["inputs"]}
    assert schema["demo.tpch.customer"] >= {"c_acctbal", "c_phone", "c_nationkey", "c_mktsegment"}

    [output] = end["outputs"]
    fields = output["facets"]["columnLineage"]["fields"]
    assert set(fields) == {"nation", "customers", "balance", "phone"}

    def sources(column: str) -> set[tuple[str, str, str, bool]]:
        return {(f["name"], f["field"], f["transformations"][0]["subtype"], f["transformations"][0]["masking"])
                for f in fields[column]["inputFields"]}

    assert sources("nation") == {("demo.tpch.nation", "n_name", "IDENTITY", False)}
    assert sources("customers") == set()
    assert sources("balance") == {("demo.tpch.customer", "c_acctbal", "AGGREGATION", True)}  # masked for alice
    assert sources("phone") == {("demo.tpch.customer", "c_phone", "AGGREGATION", True)}
    indirect = {(f["name"], f["field"], f["transformations"][0]["subtype"])
                for f in output["facets"]["columnLineage"]["dataset"]}
    assert {("demo.tpch.customer", "c_nationkey", "JOIN"), ("demo.tpch.nation", "n_nationkey", "JOIN"),
            ("demo.tpch.customer", "c_mktsegment", "FILTER"), ("demo.tpch.nation", "n_name", "GROUP_BY")} <= indirect

    governance = end["run"]["facets"]["queryGateway"]
    assert governance["queryId"] == query_id and governance["user"] == "alice"
    assert governance["costCenter"] == "CC-2001" and governance["source"] == "lineage-test"
    assert governance["policyVersion"]
    assert "mask demo.tpch.customer.c_phone:last4" in governance["masksApplied"]
    assert governance["rowFiltersApplied"] == ["row_filter demo.tpch.customer #2"]
    assert "1, 2, 3" not in json.dumps(end)  # no bound attribute value anywhere in the event
    assert receiver.authorizations[-1] == "Bearer s3cret-key"
    assert "s3cret-key" not in lineage_gateway.log()
    assert lineage_gateway.metric("gateway_lineage_events_total", 'outcome="sent"') >= 2
    # the same statement again is answered from the result cache: still a run, marked as a cache hit
    again, cached_rows = query(lineage_gateway, CUSTOMER_BY_NATION)
    assert cached_rows == rows
    cached = by_type(receiver.run(again))["COMPLETE"]
    assert cached["run"]["facets"]["queryGateway"]["cacheHit"] is True
    assert cached["job"]["name"] == end["job"]["name"]  # one job, two runs
    assert cached["outputs"][0]["facets"]["columnLineage"] == output["facets"]["columnLineage"]


def test_failed_and_unread_statements(lineage_gateway: GatewayProcess, receiver: LineageServer) -> None:
    connection = trino.dbapi.connect(host=lineage_gateway.host, port=lineage_gateway.port, user="admin",
                                     catalog="demo", schema="tpch", source="lineage-test")
    cursor = connection.cursor()
    with pytest.raises(trino.exceptions.TrinoUserError):
        cursor.execute("SELECT CAST(n_name AS integer) FROM nation")
        cursor.fetchall()
    events = by_type(receiver.run(cursor.query_id))
    assert set(events) == {"START", "FAIL"}
    assert events["FAIL"]["run"]["facets"]["errorMessage"]["programmingLanguage"] == "SQL"
    assert [d["name"] for d in events["FAIL"]["inputs"]] == ["demo.tpch.nation"]
    # a statement that reads no table is no run: SHOW and SELECT 1 send nothing
    before = lineage_gateway.metric("gateway_lineage_events_total")
    query(lineage_gateway, "SELECT 1")
    query(lineage_gateway, "SHOW TABLES")
    time.sleep(0.5)
    assert lineage_gateway.metric("gateway_lineage_events_total") == before


def test_file_transport_appends_json_lines(demo_database: Path, tmp_path: Path) -> None:
    path = tmp_path / "lineage" / "events.jsonl"
    config = demo_config(demo_database, lineage={"enabled": True, "transport": "file", "file": str(path),
                                                 "job_name": "{user}.{kind}"})
    with GatewayProcess(tmp_path / "gw", config) as gateway:
        query_id, _ = query(gateway, "SELECT o_orderkey, o_totalprice * 2 AS doubled FROM orders LIMIT 3")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 2):
            time.sleep(0.05)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    end = events[1]
    assert end["job"]["name"] == "alice.select"
    assert end["run"]["facets"]["queryGateway"]["queryId"] == query_id
    fields = end["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert fields["doubled"]["inputFields"][0]["field"] == "o_totalprice"
    assert fields["doubled"]["inputFields"][0]["transformations"][0]["subtype"] == "TRANSFORMATION"
    assert "rowFiltersApplied" in end["run"]["facets"]["queryGateway"]


def test_off_by_default(gateway: GatewayProcess, connect: Any) -> None:
    cursor = connect().cursor()
    cursor.execute("SELECT count(*) FROM nation")
    cursor.fetchall()
    assert gateway.metric("gateway_lineage_events_total") == 0  # exposed, never counted
    assert gateway.metric("gateway_lineage_queue_depth") == 0


def test_dead_endpoint_never_fails_or_slows_queries(demo_database: Path, tmp_path: Path) -> None:
    """A lineage server that accepts nothing: every query still answers, the sender's queue stays bounded, and
    every event is accounted for as failed or dropped."""
    dead = f"http://127.0.0.1:{free_port()}"
    config = demo_config(demo_database, lineage={"enabled": True, "transport": "http", "url": dead,
                                                 "queue_size": 2, "retries": 1, "timeout_seconds": 2})
    with GatewayProcess(tmp_path / "gw", config) as gateway:
        for _ in range(12):
            _, rows = query(gateway, "SELECT count(*) FROM nation")
            assert rows == [[25]]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and gateway.metric("gateway_lineage_queue_depth") > 0:
            time.sleep(0.1)
        failed = gateway.metric("gateway_lineage_events_total", 'outcome="failed"')
        dropped = gateway.metric("gateway_lineage_events_total", 'outcome="dropped"')
        assert gateway.metric("gateway_lineage_events_total", 'outcome="sent"') == 0
    # Drops prove the queries never waited for the sender: a waiting query would have found room instead.
    assert dropped > 0
    assert 22 <= failed + dropped <= 24  # 12 runs of 2 events; the one being retried may not be counted yet


def test_lineage_settings_are_checked_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("lineage:\n  enabled: true\n  transport: http\n  job_name: '{source}.{table}'\n"
                    "  url: 'http://user:pw@lineage:5000'\n  transprt: file\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    text = str(error.value)
    assert "gateway.yaml:4: lineage.job_name: unknown field(s) table" in text
    assert "gateway.yaml:5: lineage.url: must be an http:// or https:// URL without credentials" in text
    assert "lineage.transprt: unknown key (did you mean 'transport'?)" in text
    assert "pw" not in text.replace("transprt", "")
    path.write_text("lineage: {enabled: true, transport: file}\n")
    with pytest.raises(ConfigError, match=r"lineage\.file: is required with transport: file"):
        load_settings(path, environ={})
    assert load_settings(None, environ={}).lineage.enabled is False


def test_prepared_statement_run_carries_its_prepared_text(lineage_gateway: GatewayProcess,
                                                          receiver: LineageServer) -> None:
    connection = trino.dbapi.connect(host=lineage_gateway.host, port=lineage_gateway.port, user="admin",
                                     catalog="demo", schema="tpch", source="lineage-test")
    cursor = connection.cursor()
    cursor.execute("SELECT r_name, lower(r_comment) AS note FROM region WHERE r_regionkey = ?", (3,))
    assert cursor.fetchall()
    end = by_type(receiver.run(cursor.query_id))["COMPLETE"]
    assert end["job"]["facets"]["sql"]["query"].startswith("SELECT r_name, LOWER(r_comment) AS note FROM region")
    fields = end["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert [f["field"] for f in fields["note"]["inputFields"]] == ["r_comment"]
    assert end["run"]["facets"]["queryGateway"]["masksApplied"] == []
