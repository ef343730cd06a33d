"""Scenario 3: workload management under overload.

Three client populations share one gateway whose backend can run `--capacity` queries at once:

    dashboards  source `dashboard`, priority 10: short BI queries, `--dashboards` clients, 20 ms think time
    adhoc       source `adhoc`, priority 1: TPC-H Q1 (a scan of lineitem with an aggregation), `--adhoc` clients
    heavy       source `heavy`: a runaway cross join, in the adhoc group, killed by its max_execution_time (1s)

Ad-hoc work gets one slot of the shared capacity at a time, so at most one core of backend work is not a
dashboard's; DuckDB runs with `--threads` (default 1) threads so one query cannot take every core.

It runs the dashboards alone (unloaded), then everything together at about 4x capacity (loaded, with
`policies/`-style resource groups), then the same load with one flat group (no priorities) for contrast.
For each run and group: queries, p50/p99 latency, p50/p99 queue wait (the gateway's queuedTimeMillis), and
outcomes. The target: dashboards' p99 loaded within 1.5x of unloaded, and no query lost or stuck (every
submitted query reaches FINISHED or FAILED, and the gateway reports nothing queued or running afterwards).

    .venv/bin/python -m load_tests.workload [--seconds 20] [--capacity 2] [--dashboards 4] [--adhoc 3] [--heavy 1]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from load_tests._gateway import BENCH_DIR, REPO, GatewayProcess, demo_config, demo_database

DASHBOARD = ["SELECT count(*), sum(o_totalprice) FROM orders WHERE o_orderdate >= DATE '1995-03-01'",
             "SELECT n_name, count(*) FROM supplier JOIN nation ON s_nationkey = n_nationkey GROUP BY 1",
             "SELECT o_orderpriority, count(*) FROM orders GROUP BY 1 ORDER BY 1"]
ADHOC = (REPO / "tests" / "tpch" / "q01.sql").read_text()
HEAVY = "SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x'"


def prioritized(capacity: int) -> str:
    return f"""
capacity: {{max_concurrency: {capacity}}}
resource_groups:
  - {{name: dashboards, priority: 10, max_concurrency: {capacity}, max_queued: 1000, queue_timeout: 60s,
     selectors: [{{source: dashboard}}]}}
  - {{name: adhoc, priority: 1, max_concurrency: 1, max_queued: 1000, queue_timeout: 60s, max_execution_time: 1s,
     selectors: [{{source: adhoc}}, {{source: heavy}}]}}
  - {{name: default, max_concurrency: {capacity}, max_queued: 100, selectors: [{{}}]}}
"""


def flat(capacity: int) -> str:
    return f"""
resource_groups:
  - {{name: everyone, max_concurrency: {capacity}, max_queued: 1000, queue_timeout: 60s, max_execution_time: 1s,
     selectors: [{{source: heavy}}]}}
  - {{name: all, max_concurrency: {capacity}, max_queued: 1000, queue_timeout: 60s, selectors: [{{}}]}}
"""


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    waits: dict[str, list[float]] = field(default_factory=dict)
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    unfinished: int = 0

    def add(self, group: str, latency: float, wait: float, outcome: str) -> None:
        self.latencies.setdefault(group, []).append(latency)
        self.waits.setdefault(group, []).append(wait)
        self.outcomes.setdefault(group, Counter())[outcome] += 1


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))] if ordered else 0.0


async def run_query(client: httpx.AsyncClient, url: str, sql: str, user: str, source: str) -> tuple[str, float]:
    headers = {"X-Trino-User": user, "X-Trino-Source": source, "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch",
               "X-Trino-Client-Tags": "nocache"}  # every query runs: this measures admission, not the result cache
    body = (await client.post(f"{url}/v1/statement", content=sql, headers=headers)).json()
    while "nextUri" in body:
        body = (await client.get(body["nextUri"], headers=headers)).json()
    state = body["stats"]["state"]
    outcome = "ok" if state == "FINISHED" else body.get("error", {}).get("errorName", state)
    return outcome, body["stats"].get("queuedTimeMillis", 0) / 1000


async def client_loop(url: str, group: str, sqls: list[str], user: str, think: float, deadline: float,
                      results: Results) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        i = 0
        while time.monotonic() < deadline:
            began = time.monotonic()
            try:
                outcome, wait = await run_query(client, url, sqls[i % len(sqls)], user, group)
            except httpx.HTTPError as error:
                outcome, wait = f"http:{type(error).__name__}", 0.0
                results.unfinished += 1
            results.add(group, time.monotonic() - began, wait, outcome)
            i += 1
            await asyncio.sleep(think)


async def load(url: str, seconds: float, populations: list[tuple[str, list[str], int, float]]) -> Results:
    results = Results()
    deadline = time.monotonic() + seconds
    tasks = [client_loop(url, group, sqls, "admin", think, deadline,
                         results)
             for group, sqls, clients, think in populations for n in range(clients)]
    await asyncio.gather(*tasks)
    return results


def report(title: str, results: Results) -> None:
    print(f"\n{title}")
    print(f"  {'group':<11} {'queries':>7} {'p50 ms':>8} {'p99 ms':>8} {'wait p50':>9} {'wait p99':>9}  outcomes")
    for group, latencies in results.latencies.items():
        waits = results.waits[group]
        outcomes = ", ".join(f"{k} {v}" for k, v in results.outcomes[group].most_common())
        print(f"  {group:<11} {len(latencies):>7} {percentile(latencies, 50) * 1000:>8.1f} "
              f"{percentile(latencies, 99) * 1000:>8.1f} {percentile(waits, 50) * 1000:>9.1f} "
              f"{percentile(waits, 99) * 1000:>9.1f}  {outcomes}")


def gateway(name: str, policy: str, scale: float, threads: int) -> GatewayProcess:
    workdir = BENCH_DIR / "workload" / name
    shutil.rmtree(workdir, ignore_errors=True)
    policies = workdir / "policies"
    policies.mkdir(parents=True)
    for file in (REPO / "policies").glob("*.yaml"):
        if file.name != "workload.yaml":
            shutil.copy(file, policies)
    (policies / "workload.yaml").write_text(policy)
    config = demo_config(demo_database(scale), logging={"level": "WARNING"})
    config["backends"]["demo"]["threads"] = threads
    config["policies"] = {"dir": str(policies)}
    return GatewayProcess(workdir, config)


def left_over(process: GatewayProcess) -> int:
    body = httpx.get(f"{process.url}/api/queries", headers={"X-Trino-User": "admin"}, timeout=10).json()
    return sum(g["running"] + g["queued"] for g in body["groups"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--capacity", type=int, default=3, help="queries the backend runs at once")
    parser.add_argument("--threads", type=int, default=1, help="DuckDB threads (backends.demo.threads)")
    parser.add_argument("--dashboards", type=int, default=6)
    parser.add_argument("--adhoc", type=int, default=4)
    parser.add_argument("--heavy", type=int, default=2)
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args(argv)
    clients = args.dashboards + args.adhoc + args.heavy
    print(f"workload benchmark: TPC-H sf{args.scale:g}, capacity {args.capacity}, {clients} clients "
          f"({clients / args.capacity:.1f}x capacity), {args.seconds:g}s per run; {os.cpu_count()} cores shared by "
          f"clients, gateway and DuckDB; python {sys.version.split()[0]}")
    dashboards = ("dashboard", DASHBOARD, args.dashboards, 0.02)
    everyone = [dashboards, ("adhoc", [ADHOC], args.adhoc, 0.0), ("heavy", [HEAVY], args.heavy, 1.0)]
    status = 0
    runs = [("prioritized", prioritized(args.capacity), [("unloaded (dashboards only)", [dashboards]),
                                                          ("loaded (all groups)", everyone)]),
            ("flat", flat(args.capacity), [("loaded, one flat group (no priorities) for contrast", everyone)])]
    p99: dict[str, float] = {}
    for name, policy, phases in runs:
        process = gateway(name, policy, args.scale, args.threads)
        try:
            for title, populations in phases:
                asyncio.run(load(process.url, 2.0, populations))  # warm-up
                results = asyncio.run(load(process.url, args.seconds, populations))
                report(f"{title} [{name} policy]", results)
                p99[f"{name}:{title}"] = percentile(results.latencies["dashboard"], 99)
                time.sleep(1.5)  # killed heavy queries finish unwinding
                remaining = left_over(process)
                print(f"  lost or stuck: {results.unfinished} client errors, {remaining} queries left in the gateway")
                status |= int(bool(results.unfinished or remaining))
        finally:
            process.stop()
    unloaded, loaded = p99["prioritized:unloaded (dashboards only)"], p99["prioritized:loaded (all groups)"]
    flat_p99 = p99["flat:loaded, one flat group (no priorities) for contrast"]
    print(f"\ndashboards p99: unloaded {unloaded * 1000:.1f} ms, loaded {loaded * 1000:.1f} ms "
          f"({loaded / unloaded:.2f}x; target <= 1.5x), "
          f"flat policy {flat_p99 * 1000:.1f} ms ({flat_p99 / unloaded:.2f}x)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
