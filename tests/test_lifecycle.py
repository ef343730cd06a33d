"""Process lifecycle: first-start demo generation, graceful drain on SIGTERM, JSON logs."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import trino
import trino.exceptions

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
    finished = [r for r in records if r.get("message") == "query" and r.get("state") == "FINISHED"
                and r.get("source") != "canary"]  # the policy canaries ran at start
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


SLOW = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x'"


def audit_rows(database: Path, where: str) -> list[sqlite3.Row]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute(f"SELECT * FROM queries WHERE {where} ORDER BY id").fetchall()
    finally:
        connection.close()


def test_sigterm_delivers_each_cancellation_before_closing(demo_database: Path, tmp_path: Path) -> None:
    """Queries still running when the grace period ends: every polling client receives SERVER_SHUTTING_DOWN
    as a Trino error (not a refused connection), and each is audited as cancelled."""
    audit_db = tmp_path / "audit.db"
    gateway = GatewayProcess(tmp_path, demo_config(demo_database, server={"shutdown_grace_seconds": 1},
                                                   audit={"store": f"sqlite:///{audit_db}",
                                                          "spool_dir": str(tmp_path / "spool")}))
    errors: list[BaseException] = []

    def slow(number: int) -> None:
        connection = trino.dbapi.connect(host=gateway.host, port=gateway.port, user="alice", catalog="demo",
                                         schema="tpch", source=f"shutdown-{number}", max_attempts=1)
        try:
            cursor = connection.cursor()
            cursor.execute(SLOW)
            cursor.fetchall()
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=slow, args=(n,)) for n in range(3)]
    try:
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        gateway.process.send_signal(signal.SIGTERM)
        gateway.process.wait(30)
        for worker in workers:
            worker.join(20)
    finally:
        gateway.stop()
    assert len(errors) == 3
    for error in errors:
        assert isinstance(error, trino.exceptions.TrinoQueryError), repr(error)
        assert error.error_name == "SERVER_SHUTTING_DOWN" and "grace period" in str(error.message)
    records = audit_rows(audit_db, "source LIKE 'shutdown-%'")
    assert sorted(r["source"] for r in records) == ["shutdown-0", "shutdown-1", "shutdown-2"]
    assert {(r["decision"], r["error_name"]) for r in records} == {("canceled", "SERVER_SHUTTING_DOWN")}


def test_execution_ms_excludes_queue_wait(demo_database: Path, tmp_path: Path) -> None:
    """The audit record's execution_ms is the time after admission (queue_wait_ms apart); the ledger's
    figures.elapsed_seconds is the backend's own part of it."""
    audit_db = tmp_path / "audit.db"
    config = demo_config(demo_database, audit={"store": f"sqlite:///{audit_db}", "spool_dir": str(tmp_path / "spool"),
                                               "flush_interval_seconds": 0.02})
    headers = {"X-Trino-User": "alice", "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch",
               "X-Trino-Source": "trino-cli"}  # adhoc: one query per user at a time
    with GatewayProcess(tmp_path, config) as gateway:
        # As in Trino, a query is dispatched by its client's first poll of the QUEUED answer's nextUri.
        blocker = httpx.post(f"{gateway.url}/v1/statement", headers=headers, content=SLOW).json()
        blocker = httpx.get(blocker["nextUri"], timeout=10).json()
        waiting: dict[str, Any] = {}

        def submit_and_poll() -> None:
            first = httpx.post(f"{gateway.url}/v1/statement", headers={**headers, "X-Trino-Client-Tags": "queued"},
                               content="SELECT count(*) FROM nation", timeout=30).json()
            waiting.update(httpx.get(first["nextUri"], timeout=30).json())

        thread = threading.Thread(target=submit_and_poll)
        thread.start()
        time.sleep(1.5)
        httpx.delete(blocker["nextUri"], timeout=10)
        thread.join(30)
        page = waiting
        while "nextUri" in page:
            page = httpx.get(page["nextUri"], timeout=10).json()
        assert page["stats"]["state"] == "FINISHED"
        deadline = time.monotonic() + 10
        while not (rows := audit_rows(audit_db, "client_tags LIKE '%queued%'")) and time.monotonic() < deadline:
            time.sleep(0.05)
    record = rows[0]
    assert record["queue_wait_ms"] > 1000 > record["execution_ms"]
    total_ms = (datetime.fromisoformat(record["finished_at"]) - datetime.fromisoformat(record["received_at"]))
    assert abs(total_ms.total_seconds() * 1000 - record["queue_wait_ms"] - record["execution_ms"]) < 200
    charge = sqlite3.connect(audit_db).execute("SELECT figures FROM charges WHERE event_id = ?",
                                               (record["event_id"],)).fetchone()
    assert json.loads(charge[0])["elapsed_seconds"] * 1000 <= record["execution_ms"]
