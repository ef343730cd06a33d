"""Benchmark: result-cache hits through the real trino client, against the same query on DuckDB directly.

    .venv/bin/python -m load_tests.cache [--clients 8] [--seconds 10]

A dashboard-sized query (TPC-H Q1: 4 rows) is cached once, then N client *processes* (the trino client is
GIL-bound, so threads in one process would measure the client, not the gateway) each run it in a closed
loop for S seconds through the gateway; every answer is a cache hit. The same query then runs on DuckDB
in-process on one thread (the latency a hit competes with). Finally wrk sends the query as raw HTTP, to show
the gateway's own ceiling. Prints queries/s, p50, p99 and the ratio of hit latency to DuckDB's.
Loopback only; every loop ends by time and by count.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb
import sqlglot
import trino

from gateway import __version__
from load_tests._gateway import BENCH_DIR, REPO, GatewayProcess, demo_config, demo_database

SQL = (REPO / "tests" / "tpch" / "q01.sql").read_text()
USER = "admin"
MAX_QUERIES_PER_CLIENT = 1_000_000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def client_loop(port: int, seconds: float, start_at: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    connection = trino.dbapi.connect(  # type: ignore[no-untyped-call]
        host="127.0.0.1", port=port, user=USER, catalog="demo", schema="tpch")
    cursor = connection.cursor()
    cursor.execute(SQL)
    cursor.fetchall()  # warm-up (and connection set-up) outside the window
    while time.time() < start_at:
        time.sleep(0.001)
    latencies: list[float] = []
    errors = 0
    end = start_at + seconds
    while time.time() < end and len(latencies) < MAX_QUERIES_PER_CLIENT:
        began = time.perf_counter()
        try:
            cursor.execute(SQL)
            if len(cursor.fetchall()) != 4:
                errors += 1
                continue
        except Exception:  # counted, never hidden
            errors += 1
            if errors > 20:
                break
            continue
        latencies.append((time.perf_counter() - began) * 1000)
    results.put((latencies, errors))


def through_gateway(port: int, clients: int, seconds: float) -> tuple[list[float], int, float]:
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 2.0
    processes = [multiprocessing.Process(target=client_loop, args=(port, seconds, start_at, results))
                 for _ in range(clients)]
    for process in processes:
        process.start()
    latencies: list[float] = []
    errors = 0
    for _ in processes:
        part, failed = results.get(timeout=seconds + 60)
        latencies += part
        errors += failed
    for process in processes:
        process.join(10)
    return latencies, errors, seconds


def direct(database: Path, seconds: float) -> list[float]:
    connection = duckdb.connect(str(database), read_only=True)
    connection.execute("USE demo.tpch")
    sql = sqlglot.transpile(SQL, read="trino", write="duckdb")[0]
    latencies: list[float] = []
    end = time.time() + seconds
    while time.time() < end and len(latencies) < MAX_QUERIES_PER_CLIENT:
        began = time.perf_counter()
        connection.execute(sql).fetchall()
        latencies.append((time.perf_counter() - began) * 1000)
    connection.close()
    return latencies


def wrk_hits(port: int, connections: int, seconds: float) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "wrk not installed (apt-get install wrk): raw HTTP skipped"
    script = Path(tempfile.mkdtemp()) / "q1.lua"
    body = SQL.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    script.write_text(f'wrk.method = "POST"\nwrk.headers["X-Trino-User"] = "{USER}"\n'
                      'wrk.headers["X-Trino-Catalog"] = "demo"\nwrk.headers["X-Trino-Schema"] = "tpch"\n'
                      f'wrk.body = "{body}"\n')
    completed = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                                "-s", str(script), f"http://127.0.0.1:{port}/v1/statement"],
                               capture_output=True, text=True, timeout=seconds + 60, check=False)
    keep = [line.strip() for line in completed.stdout.splitlines()
            if line.strip().startswith(("50%", "99%", "Requests/sec", "Non-2xx"))]
    return "; ".join(keep)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    database = demo_database(0.01)
    workdir = BENCH_DIR / "cache"
    shutil.rmtree(workdir, ignore_errors=True)
    config = {**demo_config(database), "logging": {"level": "WARNING"}, "cache": {"ttl_seconds": 3600}}
    with GatewayProcess(workdir, config) as gateway:
        latencies, errors, seconds = through_gateway(gateway.port, args.clients, args.seconds)
        raw = wrk_hits(gateway.port, args.clients, args.seconds)
    baseline = direct(database, min(args.seconds, 5.0))
    hit_p50, direct_p50 = percentile(latencies, 0.5), percentile(baseline, 0.5)
    print(f"gateway {__version__}; TPC-H Q1 (4 rows) as {USER}, every gateway answer a cache hit; "
          f"{multiprocessing.cpu_count()} cores shared by clients and gateway")
    print(f"{'path':<28} {'queries':>9} {'errors':>7} {'q/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'cache hit, trino client x' + str(args.clients):<28} {len(latencies):>9} {errors:>7} "
          f"{len(latencies) / seconds:>9.1f} {hit_p50:>8.2f} {percentile(latencies, 0.99):>8.2f}")
    print(f"{'DuckDB direct, 1 thread':<28} {len(baseline):>9} {0:>7} {len(baseline) / min(args.seconds, 5.0):>9.1f} "
          f"{direct_p50:>8.2f} {percentile(baseline, 0.99):>8.2f}")
    print(f"hit p50 / direct p50: {hit_p50 / direct_p50:.2f}x")
    print(f"raw HTTP hits (wrk, {args.clients} connections): {raw}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
