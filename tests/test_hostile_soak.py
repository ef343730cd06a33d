"""The long hostile-input cases (`make test-slow`): a slow-client soak, peak memory of the gateway process for
large expressions and large values under an RSS watchdog, and a stream of unencodable results."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from pathlib import Path

import pytest
import trino

from gateway.testing import RssWatchdog
from tests.conftest import GatewayProcess
from tests.test_hostile_input import and_terms, audit_records, error_name, hostile_config, run

pytestmark = pytest.mark.slow

RSS_LIMIT = 3 * 1024**3


def test_thousands_of_slow_clients_for_twenty_seconds_never_lock_out_real_ones(demo_database: Path,
                                                                               tmp_path: Path) -> None:
    config = hostile_config(demo_database, tmp_path, server={"header_timeout_seconds": 2, "body_timeout_seconds": 2,
                                                             "max_connections": 1000})
    with GatewayProcess(tmp_path, config) as gateway:
        stop = threading.Event()
        opened = 0

        def attack() -> None:
            nonlocal opened
            held: list[socket.socket] = []
            while not stop.is_set():
                while len(held) < 3000 and not stop.is_set():
                    connection = socket.create_connection((gateway.host, gateway.port), timeout=10)
                    connection.sendall(b"POST /v1/statement HTTP/1.1\r\nHost: x\r\n" if opened % 2 else b"")
                    held.append(connection)
                    opened += 1
                time.sleep(0.5)
                for connection in held[:500]:  # recycle the oldest, as an attacker reconnecting would
                    connection.close()
                del held[:500]
            for connection in held:
                connection.close()

        latencies: list[float] = []
        failures: list[BaseException] = []

        def client(n: int) -> None:
            cursor = trino.dbapi.connect(host=gateway.host, port=gateway.port, user="alice", catalog="demo",
                                         schema="tpch").cursor()
            while not stop.is_set():
                began = time.monotonic()
                try:
                    cursor.execute(f"SELECT count(*) FROM nation WHERE n_nationkey > -1 - {n}")
                    assert cursor.fetchall() == [[25]]
                    latencies.append(time.monotonic() - began)
                except BaseException as error:  # counted and reported below
                    failures.append(error)

        attacker = threading.Thread(target=attack, daemon=True)
        attacker.start()
        time.sleep(2)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(client, n) for n in range(4)]
            peak_open = 0.0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                peak_open = max(peak_open, gateway.metric("gateway_http_connections_open"))
                time.sleep(0.5)
            stop.set()
            for future in clients:
                future.result()
        attacker.join(30)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"\nslow-client soak: {opened} slow connections, {len(latencies)} real queries, p50 "
              f"{latencies[len(latencies) // 2] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, peak open {peak_open:.0f}")
        assert not failures, failures[:3]
        assert len(latencies) > 100
        assert p99 < 3.0
        assert peak_open <= 1000
        assert gateway.metric("gateway_http_connections_closed_total", 'reason="evicted"') > 1000


def test_peak_memory_of_large_expressions_and_large_values(demo_database: Path, tmp_path: Path) -> None:
    config = hostile_config(demo_database, tmp_path)
    config["backends"]["demo"]["memory_limit"] = "2GB"  # the default, not the fast suite's small one
    config["limits"] = {"max_result_bytes": "100MB"}  # else the defaults
    with GatewayProcess(tmp_path, config) as gateway:
        peaks: dict[str, int] = {}
        cases = {
            "20,000 AND terms (450 KB)": (and_terms(20_000), 1, "QUERY_TEXT_TOO_LARGE"),
            "500 AND terms (at the bound) x4": (and_terms(499), 4, None),  # one more term is added below
            "600 AND terms x8": (and_terms(600), 8, "QUERY_REJECTED"),
            "repeat('x', 300000000)": ("SELECT repeat('x', 300000000) AS v", 1, "EXCEEDED_RESULT_BYTES_LIMIT"),
            "100 x 1 MB values": ("SELECT k, repeat('x', 1000000) AS v FROM (SELECT l_orderkey AS k FROM lineitem "
                                  "LIMIT 100) AS keys", 1, "EXCEEDED_RESULT_BYTES_LIMIT"),
            "5,000 x 60 KB rows (300 MB)": ("SELECT k, repeat('x', 60000) AS v FROM (SELECT l_orderkey AS k FROM "
                                            "lineitem LIMIT 5000) AS keys", 1, "EXCEEDED_RESULT_BYTES_LIMIT"),
        }
        for name, (sql, concurrency, expected) in cases.items():
            with RssWatchdog(gateway.process.pid, limit_bytes=RSS_LIMIT) as watchdog:
                base = watchdog.peak_bytes
                with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                    results = list(pool.map(lambda i, s=sql: run(gateway, f"{s} AND 1000000 + {i} > 0" if "WHERE"
                                                                 in s else s), range(concurrency)))
            assert not watchdog.killed, f"{name}: the gateway passed {RSS_LIMIT} bytes of RSS"
            assert [error_name(r) for r in results] == [expected] * concurrency, name
            peaks[name] = watchdog.peak_bytes - base
            print(f"\n{name}: peak RSS {watchdog.peak_bytes / 2**20:.0f} MB (+{peaks[name] / 2**20:.0f} MB)")
        assert run(gateway, "SELECT count(*) FROM nation")["rows"] == [[25]]


def test_a_stream_of_unencodable_results_keeps_its_group_serving_and_audited(demo_database: Path,
                                                                             tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, hostile_config(demo_database, tmp_path)) as gateway:
        source = "unencodable-soak"
        statements = [f"SELECT DATE '{10_000 + i}-01-01' AS d, TIMESTAMP '{20_000 + i}-01-01 00:00:00' AS t"
                      for i in range(400)]
        with RssWatchdog(gateway.process.pid, limit_bytes=RSS_LIMIT) as watchdog, \
                concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda sql: run(gateway, sql, tags="tiny", source=source), statements))
        assert {error_name(r) for r in results} == {"NUMERIC_VALUE_OUT_OF_RANGE"}
        assert run(gateway, "SELECT 1", tags="tiny", source=source)["rows"] == [[1]]
        records = audit_records(tmp_path, source, expect=401, timeout=30)
        assert len(records) == 401 and len({r["query_id"] for r in records}) == 401
        assert gateway.metric("gateway_queries_in_flight") == 0
        print(f"\n400 unencodable results: peak RSS {watchdog.peak_bytes / 2**20:.0f} MB")
