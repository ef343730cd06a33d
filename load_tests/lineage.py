"""Benchmark: what OpenLineage events cost a query. Per-query latency through a real gateway with lineage off
(the reference, measured in the same run), on with the file transport (every event built and written), and
on against a dead HTTP endpoint (the sender retries, the queue fills, events are dropped).

    .venv/bin/python -m load_tests.lineage [--queries 2000] [--scale 0.01]

Prints p50/p99 per configuration and its ratio to the reference, and the events counted by outcome.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import platform
import shutil
from pathlib import Path
from typing import Any

from gateway.testing import free_port
from load_tests._gateway import BENCH_DIR, GatewayProcess, demo_config, demo_database
from load_tests.audit import latencies, percentile

WORKDIR = BENCH_DIR / "lineage"


def run(name: str, database: Path, queries: int, lineage: dict[str, Any] | None) -> tuple[float, float, str]:
    config = demo_config(database, logging={"level": "WARNING"}, cache={"enabled": False})
    if lineage is not None:
        config["lineage"] = lineage
    with GatewayProcess(WORKDIR / name, config) as gateway:
        values = latencies(gateway, queries)
        counts = {outcome: gateway.metric("gateway_lineage_events_total", f'outcome="{outcome}"')
                  for outcome in ("sent", "failed", "dropped")}
    counted = ", ".join(f"{outcome} {count:.0f}" for outcome, count in counts.items())
    return percentile(values, 0.5), percentile(values, 0.99), counted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    database = demo_database(args.scale)
    print(f"machine: {platform.machine()} {platform.system()}, Python {platform.python_version()}; "
          f"{args.queries} point queries per configuration, one client")
    configurations: list[tuple[str, dict[str, Any] | None]] = [
        ("off", None),
        ("file", {"enabled": True, "transport": "file", "file": str(WORKDIR / "events.jsonl")}),
        ("dead-http", {"enabled": True, "transport": "http", "url": f"http://127.0.0.1:{free_port()}",
                       "queue_size": 100, "retries": 2}),
    ]
    reference: tuple[float, float] | None = None
    for name, lineage in configurations:
        p50, p99, counted = run(name, database, args.queries, lineage)
        if reference is None:
            reference = (p50, p99)
        print(f"{name:>10}: p50 {p50:6.2f} ms ({p50 / reference[0]:.2f}x)  p99 {p99:6.2f} ms "
              f"({p99 / reference[1]:.2f}x)  events: {counted}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
