"""Benchmark: what the gateway adds to a point query on a PostgreSQL warehouse.

    .venv/bin/python -m load_tests.postgres [--repeat 300] [--scale 0.01]

A database of its own on 127.0.0.1:5432 (TPC-H from the demo file, primary key on orders; dropped at the
end) and a gateway on a free port with the result cache off. The same point query on a different key each
time (`SELECT o_orderkey, o_totalprice, o_orderstatus FROM tpch.orders WHERE o_orderkey = k`):

    asyncpg direct     one connection, simple query with the literal: PostgreSQL plus the driver
    backend adapter    gateway.backends.postgres in process: pool, read-only transaction with its
                       statement_timeout, prepared statement, server cursor, rollback
    resilient adapter  the same behind the circuit breaker and read retries (gateway.backends.resilience),
                       as the factory builds every backend
    gateway admin      the trino client through the gateway, no row filter: parse, policy, plan,
                       admission, audit, HTTP paging, and the backend's read-only transaction
    gateway alice      the same for alice, whose orders are row-filtered behind the security barrier

p50 and p99 per path in milliseconds, and the gateway's added latency (gateway p50 minus direct p50).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import trino

from gateway.backends.base import Backend
from gateway.backends.postgres import PostgresBackend
from gateway.backends.resilience import ResilienceSettings, ResilientBackend
from load_tests._gateway import REPO, GatewayProcess, demo_database
from load_tests.rewrite import percentile
from tests.pg_warehouse import PgWarehouse

POINT = "SELECT o_orderkey, o_totalprice, o_orderstatus FROM tpch.orders WHERE o_orderkey = {key}"


def sampled(run: Callable[[int], object], keys: list[int]) -> list[float]:
    samples = []
    for key in keys:
        began = time.perf_counter()
        run(key)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def direct(dsn: str, keys: list[int]) -> list[float]:
    connection = await asyncpg.connect(dsn)
    samples = []
    try:
        for key in keys:
            began = time.perf_counter()
            await connection.fetch(POINT.format(key=key))
            samples.append((time.perf_counter() - began) * 1000)
    finally:
        await connection.close()
    return samples


async def adapter(dsn: str, keys: list[int], *, resilient: bool = False) -> list[float]:
    backend: Backend = PostgresBackend(name="pg", dsn=dsn, tables=[])
    if resilient:
        backend = ResilientBackend(backend, ResilienceSettings())
    samples = []
    try:
        for key in keys:
            began = time.perf_counter()
            execution = backend.execution(POINT.format(key=key), time_limit_seconds=60)
            await execution.start()
            while await execution.fetch(1024) is not None:
                pass
            samples.append((time.perf_counter() - began) * 1000)
    finally:
        await backend.close()
    return samples


def through_gateway(gateway: GatewayProcess, user: str, catalog: str = "pg") -> Callable[[int], object]:
    connection = trino.dbapi.connect(  # type: ignore[no-untyped-call]
        host=gateway.host, port=gateway.port, user=user, catalog=catalog, schema="tpch")
    return point_queries(connection.cursor())


def point_queries(cursor: Any) -> Callable[[int], object]:
    """The point query on key k through a DB-API cursor (any client's), rows fetched."""
    def run(key: int) -> object:
        cursor.execute(POINT.format(key=key))
        return cursor.fetchall()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args()

    warehouse = PgWarehouse(demo_database(args.scale))
    try:
        warehouse.sql("ALTER TABLE tpch.orders ADD PRIMARY KEY (o_orderkey); ANALYZE tpch.orders")
        order_keys = [int(k) for k in warehouse.sql("SELECT o_orderkey FROM tpch.orders").split()]
        keys = [random.choice(order_keys) for _ in range(args.repeat)]
        with tempfile.TemporaryDirectory() as work:
            config = {"backends": {"pg": {"type": "postgres", "dsn": warehouse.dsn}},
                      "policies": {"dir": str(REPO / "policies")}, "cache": {"enabled": False},
                      "logging": {"level": "WARNING"}}
            gateway = GatewayProcess(Path(work), config)
            try:
                results = {"asyncpg direct": asyncio.run(direct(warehouse.dsn, keys)),
                           "backend adapter": asyncio.run(adapter(warehouse.dsn, keys)),
                           "resilient adapter": asyncio.run(adapter(warehouse.dsn, keys, resilient=True))}
                for user in ("admin", "alice"):
                    run = through_gateway(gateway, user)
                    sampled(run, keys[:20])  # warm: plan cache, pool, secure views
                    results[f"gateway {user}"] = sampled(run, keys)
            finally:
                gateway.stop()
    finally:
        warehouse.drop()
    report(f"point query on PostgreSQL (sf{args.scale:g}, {args.repeat} runs, distinct keys, cache off), ms",
           results, direct_path="asyncpg direct")


def report(title: str, results: dict[str, list[float]], *, direct_path: str) -> None:
    """p50/p99 per path, and what the gateway adds (its paths minus `direct_path`)."""
    print(title)
    print(f"{'path':<18} {'p50':>7} {'p99':>7}")
    for name, samples in results.items():
        print(f"{name:<18} {percentile(samples, .5):7.2f} {percentile(samples, .99):7.2f}")
    base = results[direct_path]
    for user in ("admin", "alice"):
        mine = results[f"gateway {user}"]
        print(f"added by the gateway ({user}): p50 {percentile(mine, .5) - percentile(base, .5):+.2f} ms, "
              f"p99 {percentile(mine, .99) - percentile(base, .99):+.2f} ms")


if __name__ == "__main__":
    main()
