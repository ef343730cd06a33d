"""Benchmark: what an outer gateway with a Trino backend adds to a point query.

    .venv/bin/python -m load_tests.trino_backend [--repeat 300] [--scale 0.01]

No Trino server runs here, so the "warehouse" is an inner gateway (Trino protocol over the embedded DuckDB
demo), and the outer gateway's `type: trino` backend talks to it, both with the result cache off. The same
point query on a different key each time
(`SELECT o_orderkey, o_totalprice, o_orderstatus FROM tpch.orders WHERE o_orderkey = k`):

    inner direct       the trino client against the inner gateway: what a client of the warehouse pays
    outer admin        the trino client through the outer gateway (no row filter), which runs the query on
                       the inner through the Trino backend: parse, policy, plan, admission, audit, HTTP
                       paging, then the backend's own POST/GET round trips
    plain alice        alice on a gateway over the same DuckDB file directly (the shipped policies)
    outer alice        alice through the outer: her orders are row-filtered behind the security barrier in
                       the SQL the inner receives, which the inner parses and runs (the subquery filter too)

p50 and p99 per path in milliseconds (measured in the same run); what chaining adds: outer admin minus
inner direct, outer alice minus plain alice, and the ratio of the p50s.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
from pathlib import Path
from typing import Any

import trino

from load_tests._gateway import REPO, GatewayProcess, demo_database
from load_tests.postgres import sampled, through_gateway
from load_tests.rewrite import percentile

INNER_POLICY = "tables:\n  - {name: 'demo.tpch.*', owner: platform, access: [{}]}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args()
    database = demo_database(args.scale)
    with tempfile.TemporaryDirectory() as work_dir, contextlib.ExitStack() as running:
        work = Path(work_dir)
        (work / "inner-policies").mkdir()
        (work / "inner-policies" / "tables.yaml").write_text(INNER_POLICY)
        quiet = {"cache": {"enabled": False}, "logging": {"level": "WARNING"}}
        duckdb_backend = {"demo": {"type": "duckdb", "path": str(database), "schema": "tpch"}}
        inner = running.enter_context(GatewayProcess(work / "inner", {
            "backends": duckdb_backend, "policies": {"dir": str(work / "inner-policies")}, **quiet}))
        outer = running.enter_context(GatewayProcess(work / "outer", {
            "backends": {"demo": {"type": "trino", "url": inner.url, "catalog": "demo", "schema": "tpch",
                                  "forward_identity": True}},
            "policies": {"dir": str(REPO / "policies")}, **quiet}))
        plain = running.enter_context(GatewayProcess(work / "plain", {
            "backends": duckdb_backend, "policies": {"dir": str(REPO / "policies")}, **quiet}))
        cursor: Any = trino.dbapi.connect(  # type: ignore[no-untyped-call]
            host=inner.host, port=inner.port, user="admin", catalog="demo", schema="tpch").cursor()
        cursor.execute("SELECT o_orderkey FROM orders")
        order_keys = [int(row[0]) for row in cursor.fetchall()]
        keys = [random.choice(order_keys) for _ in range(args.repeat)]
        results: dict[str, list[float]] = {}
        for name, gateway, user in (("inner direct", inner, "admin"), ("outer admin", outer, "admin"),
                                    ("plain alice", plain, "alice"), ("outer alice", outer, "alice")):
            run = through_gateway(gateway, user, catalog="demo")
            sampled(run, keys[:20])  # warm: plan cache, connections
            results[name] = sampled(run, keys)
    print(f"point query through a Trino backend (inner gateway on DuckDB sf{args.scale:g}, {args.repeat} runs, "
          "distinct keys, cache off), ms")
    print(f"{'path':<14} {'p50':>7} {'p99':>7}")
    for name, samples in results.items():
        print(f"{name:<14} {percentile(samples, .5):7.2f} {percentile(samples, .99):7.2f}")
    for name, reference in (("outer admin", "inner direct"), ("outer alice", "plain alice")):
        mine, base = results[name], results[reference]
        p50, p99 = percentile(mine, .5), percentile(mine, .99)
        print(f"{name} vs {reference}: p50 {p50 - percentile(base, .5):+.2f} ms, "
              f"p99 {p99 - percentile(base, .99):+.2f} ms, p50 ratio {p50 / percentile(base, .5):.2f}x")


if __name__ == "__main__":
    main()
