"""Benchmark: the audit trail. Sustained records/s into PostgreSQL, the cost of `append` on the query path,
and the added per-query latency through a real gateway with auditing on vs off.

    .venv/bin/python -m load_tests.audit [--records 50000] [--queries 2000] [--pg postgresql://postgres@127.0.0.1:5432]

Creates a scratch database (and drops it at the end) on the given PostgreSQL server; only 127.0.0.1 is
contacted. See load_tests/README.md ("Scenario 3") for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from gateway.audit.record import AuditRecord, utc_now
from gateway.audit.stores.postgres import PostgresStore
from gateway.audit.trail import AuditTrail, TrailOptions
from gateway.metrics import Metrics
from load_tests._gateway import BENCH_DIR, GatewayProcess, demo_config, demo_database

WORKDIR = BENCH_DIR / "audit"
MAX_SECONDS = 120  # every loop also stops by time


def psql(server: str, sql: str, database: str = "postgres") -> None:
    subprocess.run(["psql", f"{server}/{database}", "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True,
                   capture_output=True, timeout=60)


def sample_record(n: int) -> AuditRecord:
    now = utc_now()
    return AuditRecord(event_id=uuid.uuid4().hex, received_at=now, finished_at=now, query_id=f"q{n}",
                       user_name="alice", user_groups=["analysts"], auth_method="dev", client_address="127.0.0.1",
                       source="bench", catalog_name="demo", schema_name="tpch",
                       sql=f"SELECT * FROM customer WHERE c_custkey = {n}",
                       rewritten_sql=f'SELECT "c_custkey", "c_name" FROM "demo"."tpch"."customer" '
                                     f'WHERE c_custkey = {n}',
                       statement_type="select", tables_read=["demo.tpch.customer"],
                       columns_read={"demo.tpch.customer": ["c_custkey", "c_name"]}, policy_version="ab" * 32,
                       rules_applied=["access demo.tpch.customer", "mask demo.tpch.customer.c_phone:last4"],
                       execution_ms=1.25, row_count=1, byte_count=120, backend="demo", backend_query_id=f"demo-{n}",
                       cost_center="CC-2001")


async def store_throughput(dsn: str, records: int) -> tuple[float, float, float]:
    """(records/s sustained into PostgreSQL, µs per append on the path p50, p99)."""
    store = PostgresStore(dsn)
    with tempfile.TemporaryDirectory() as spool:
        trail = AuditTrail(store=store, metrics=Metrics(), options=TrailOptions(
            spool_dir=Path(spool), batch_size=2000, flush_interval_seconds=0.02))
        await trail.start()
        costs: list[float] = []
        began = time.perf_counter()
        for n in range(records):
            record = sample_record(n)
            t0 = time.perf_counter()
            trail.append(record)
            costs.append(time.perf_counter() - t0)
            if n % 500 == 0:
                await asyncio.sleep(0)  # let the writer run, as a serving event loop would
        deadline = time.monotonic() + MAX_SECONDS
        while trail.stored_through < records and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - began
        stored = trail.stored_through
        await trail.stop()
    costs.sort()
    return stored / elapsed, costs[len(costs) // 2] * 1e6, costs[int(len(costs) * 0.99)] * 1e6


def latencies(gateway: GatewayProcess, queries: int) -> list[float]:
    headers = {"X-Trino-User": "admin", "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}
    results = []
    deadline = time.monotonic() + MAX_SECONDS
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        for n in range(queries + 100):
            t0 = time.perf_counter()
            body = client.post("/v1/statement", content=f"SELECT n_name FROM nation WHERE n_nationkey = {n % 25}")
            page = body.json()
            if page["stats"]["state"] != "FINISHED" or "nextUri" in page:
                raise RuntimeError(f"unexpected answer: {body.text[:300]}")
            if n >= 100:  # warm-up excluded
                results.append(time.perf_counter() - t0)
            if time.monotonic() > deadline:
                break
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    name = f"audit_bench_{uuid.uuid4().hex[:8]}"
    psql(args.pg, f"CREATE DATABASE {name}")
    dsn = f"{args.pg}/{name}"
    try:
        print(f"machine: {platform.machine()} {platform.system()}, Python {platform.python_version()}; "
              f"PostgreSQL at {args.pg.rsplit('@', 1)[-1]}")
        rate, p50_us, p99_us = asyncio.run(store_throughput(dsn, args.records))
        print(f"\nstore throughput: {args.records:,} records -> PostgreSQL: {rate:,.0f} records/s sustained "
              f"(target >= 5,000/s)")
        print(f"append() on the query path (seal + journal write): p50 {p50_us:.1f} us, p99 {p99_us:.1f} us")
        WORKDIR.mkdir(parents=True, exist_ok=True)
        database = demo_database(0.01)
        rows = []
        for label, module in (("off", "load_tests._audit_off"), ("on", "gateway.cli")):
            workdir = WORKDIR / label
            config = demo_config(database, logging={"level": "WARNING"},
                                 audit={"store": dsn, "spool_dir": str(workdir / "spool")})
            with GatewayProcess(workdir, config, module=module) as gateway:
                values = latencies(gateway, args.queries)
            rows.append((label, len(values), statistics.mean(values) * 1000, percentile(values, 0.5),
                         percentile(values, 0.99)))
        print(f"\nper-query latency, one client, raw HTTP point query ({args.queries:,} queries each):")
        print("audit  queries  mean ms  p50 ms  p99 ms")
        for label, count, mean, p50, p99 in rows:
            print(f"{label:5}  {count:7,}  {mean:7.3f}  {p50:6.3f}  {p99:6.3f}")
        off, on = rows
        print(f"added by auditing: p50 {on[3] - off[3]:+.3f} ms, p99 {on[4] - off[4]:+.3f} ms")
    finally:
        psql(args.pg, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
