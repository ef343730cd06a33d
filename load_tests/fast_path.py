"""Benchmark: what the gateway adds on its fast path, as ratios against references measured in the same run.

    .venv/bin/python -m load_tests.fast_path [--connections 8] [--seconds 10] [--scale 0.01] [--isolation thread]

References and measurements, all on this machine, one after the other:
  trivial     a starlette app on the same uvicorn stack answering every POST with a finished one-row result
  select1     `SELECT 1` through the gateway (planned, admitted, audited, metered, logged)
  cache_hit   a dashboard aggregate repeated, answered from the result cache
  point       the TPC-H point query (a new key each time) through the gateway (the cache cannot help)
Throughput (req/s) and latency (p50/p99) come from wrk, one POST per query (`protocol.inline_first_page`).
Then, with the real trino client (N threads, the protocol's normal QUEUED start): `SELECT 1` through the
gateway against the trivial responder, and the point query against DuckDB queried in-process by N threads.
Audit (SQLite), metering and INFO logging are on in every figure. See load_tests/README.md.

The raw-HTTP table also shows the CPU time the server process (all its threads) spent per answered query,
from /proc: on a shared machine, where req/s and latency move with everyone else's load, it is the steadier
figure of what the gateway's own work costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx

from gateway.backends.settings import ISOLATIONS
from gateway.testing import free_port, process_tree
from load_tests._gateway import BENCH_DIR, GatewayProcess, demo_config, demo_database
from load_tests.trino_protocol import (
    DuckDBSession,
    HttpResult,
    Measurement,
    TrinoSession,
    fixed_query,
    fmt,
    machine_note,
    max_customer_key,
    point_query,
    ratio,
    run_load,
    run_wrk,
)

FIXED_SCRIPT = Path(__file__).resolve().parent / "fixed_query.lua"
WORKDIR = BENCH_DIR / "fast_path"
DASHBOARD = "SELECT c_mktsegment, count(*) AS customers FROM customer GROUP BY c_mktsegment ORDER BY 1"


class TrivialResponder:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "load_tests._trivial", str(self.port)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v1/info", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the trivial responder did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) and of the processes it started and still
    runs (a DuckDB backend's engine process, `isolation: process`) so far."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wrk_fixed(wrk: str, url: str, pid: int, connections: int, seconds: float, sql: str) -> tuple[HttpResult, float]:
    """The wrk figures, and the server's CPU microseconds per finished query over the same run."""
    before = process_cpu_seconds(pid)
    result = run_wrk(wrk, url, connections, seconds, 0, script=FIXED_SCRIPT, script_args=[sql, "admin"])
    return result, (process_cpu_seconds(pid) - before) * 1e6 / max(1, result.finished)


def print_http(rows: list[tuple[str, tuple[HttpResult, float]]], reference: HttpResult) -> None:
    print(f"{'path':<12} {'req/s':>9} {'x trivial':>10} {'p50 ms':>8} {'+p50 ms':>8} {'p99 ms':>8} {'failed':>7} "
          f"{'cpu us/q':>9}")
    for name, (result, cpu) in rows:
        print(f"{name:<12} {fmt(result.rps):>9} {fmt(ratio(result.rps, reference.rps), 3):>10} "
              f"{fmt(result.p50_ms, 2):>8} {fmt(result.p50_ms - reference.p50_ms, 2):>8} {fmt(result.p99_ms, 2):>8} "
              f"{result.failed:>7} {fmt(cpu):>9}")


def print_client(name: str, measured: Measurement, reference: Measurement) -> None:
    print(f"{name:<28} {fmt(measured.qps):>8} q/s ({fmt(ratio(measured.qps, reference.qps), 3)}x of "
          f"{reference.path}: {fmt(reference.qps)})  p50 {fmt(measured.percentile_ms(50), 2)} ms vs "
          f"{fmt(reference.percentile_ms(50), 2)}  p99 {fmt(measured.percentile_ms(99), 2)} ms vs "
          f"{fmt(reference.percentile_ms(99), 2)}  errors {measured.errors + reference.errors}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--isolation", choices=ISOLATIONS, default="thread",
                        help="where the demo backend's DuckDB runs (backends.<name>.isolation)")
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is needed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    database = demo_database(args.scale)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    print(machine_note())
    trivial = TrivialResponder()
    config = demo_config(database, audit={"store": f"sqlite:///{WORKDIR / 'audit.db'}",
                                          "spool_dir": str(WORKDIR / "spool")},
                         masking={"key_file": str(WORKDIR / "mask.key")})
    config["backends"]["demo"]["isolation"] = args.isolation
    print(f"demo backend: isolation {args.isolation}")
    gateway = GatewayProcess(WORKDIR, config)
    failures = 0
    try:
        n, s = args.connections, args.seconds
        rows = [("trivial", wrk_fixed(wrk, trivial.url, trivial.process.pid, n, s, "SELECT 1")),
                ("select1", wrk_fixed(wrk, gateway.url, gateway.process.pid, n, s, "SELECT 1")),
                ("cache_hit", wrk_fixed(wrk, gateway.url, gateway.process.pid, n, s, DASHBOARD))]
        print(f"\nraw HTTP, wrk, {n} connections, {s:g} s each (one POST per query)")
        print_http(rows, rows[0][1][0])
        failures += sum(result.failed for _, (result, _cpu) in rows)

        print(f"\ntrino client, {n} threads, {s:g} s each")
        select1 = fixed_query("select1", "SELECT 1", 1)
        trino_trivial = run_load(select1, "trivial", n, s, lambda: TrinoSession("127.0.0.1", trivial.port))
        trino_gateway = run_load(select1, "gateway", n, s, lambda: TrinoSession("127.0.0.1", gateway.port))
        print_client("SELECT 1: gateway", trino_gateway, trino_trivial)
        point = point_query(max_customer_key(database))
        connection = duckdb.connect(str(database), read_only=True)
        try:
            direct = run_load(point, "duckdb in-process", n, s, lambda: DuckDBSession(connection))
        finally:
            pass
        through = run_load(point, "gateway", n, s, lambda: TrinoSession("127.0.0.1", gateway.port))
        connection.close()
        print_client("point query: gateway", through, direct)
        failures += trino_trivial.errors + trino_gateway.errors + direct.errors + through.errors
    finally:
        gateway.stop()
        trivial.stop()
    print(f"\ncores: {os.cpu_count()}; gateway: 1 process (server.workers not applied)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
