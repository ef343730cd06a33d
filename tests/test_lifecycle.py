"""Process lifecycle: first-start demo generation, graceful drain on SIGTERM, JSON logs."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import trino

from tests.conftest import POLICIES, GatewayProcess, demo_config


def test_first_start_generates_the_demo_warehouse(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "demo.duckdb"
    config = {"backends": {"demo": {"type": "duckdb", "path": str(database), "schema": "tpch", "tpch_scale": 0.01}},
              "policies": {"dir": str(POLICIES)}}
    gateway = GatewayProcess(tmp_path, config)
    try:
        assert database.exists()
        connection = trino.dbapi.connect(host=gateway.host, port=gateway.port, user="alice", catalog="demo",
                                         schema="tpch")
        cursor = connection.cursor()
        cursor.execute("SELECT count(*) FROM region")
        assert cursor.fetchall() == [[5]]
    finally:
        assert gateway.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained on


def test_sigterm_drains_running_queries_then_exits(demo_database: Path, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, demo_config(demo_database, server={"shutdown_grace_seconds": 20},
                                                   logging={"format": "json"}))
    headers = {"X-Trino-User": "alice", "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}
    # a result big enough to need several polls, left half-read when the signal arrives
    first = httpx.post(f"{gateway.url}/v1/statement", headers=headers,
                       content="SELECT * FROM lineitem ORDER BY l_orderkey").json()
    assert "nextUri" in first
    gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # no new queries while draining; readiness says so, so load balancers stop sending
    refused = httpx.post(f"{gateway.url}/v1/statement", headers=headers, content="SELECT 1")
    assert refused.status_code == 503 and refused.json()["error"]["errorName"] == "SERVER_SHUTTING_DOWN"
    assert httpx.get(f"{gateway.url}/health/ready").status_code == 503
    # the running query can still be read to its end
    rows = len(first.get("data", []))
    page: dict[str, Any] = first
    while "nextUri" in page:
        page = httpx.get(page["nextUri"], timeout=10).json()
        rows += len(page.get("data", []))
    assert rows == 60175 and page["stats"]["state"] == "FINISHED"
    gateway.process.wait(15)
    assert gateway.process.returncode in (0, -signal.SIGTERM)
    records = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    finished = [r for r in records if r.get("message") == "query" and r.get("state") == "FINISHED"]
    assert finished and finished[0]["rows"] == 60175 and finished[0]["user"] == "alice"
    gateway.stop()


def test_sigterm_cancels_queries_left_after_the_grace_period(demo_database: Path, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, demo_config(demo_database, server={"shutdown_grace_seconds": 1}))
    connection = trino.dbapi.connect(host=gateway.host, port=gateway.port, user="alice", catalog="demo",
                                     schema="tpch")
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x'")
            cursor.fetchall()
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    gateway.process.wait(20)
    assert time.monotonic() - started < 15
    assert gateway.process.returncode in (0, -signal.SIGTERM)
    worker.join(20)
    assert errors  # the client was told; it did not hang
    gateway.stop()
