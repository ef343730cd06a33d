"""Throughput of `server.workers: 2` against `server.workers: 1` on this machine.

The same gateway (demo TPC-H, result cache off, workload admission through the real Redis on 127.0.0.1:6379)
runs once with one process and once with two workers sharing the port; `--clients` asyncio clients each
send point queries (`SELECT * FROM customer WHERE c_custkey = <random>`, one POST answered with its rows:
`protocol.inline_first_page`) for `--seconds`, plus a paged query (`--paged` of the clients follow nextUri
over small pages, so polls also cross workers). The runs go in ABBA order (1, 2, 2, 1 workers; `--rounds`
times), so a machine whose load drifts (a shared one) biases neither side; it prints queries per second of
each run and the ratio of the totals, measured in the same run. Every loop stops on its own (time limit and
query-count limit). The clients run on the same machine: on a 2-core host they take CPU the second worker
would use, so the ratio there is a lower bound of what a dedicated host gains.

    .venv/bin/python -m load_tests.workers [--seconds 10] [--clients 16] [--paged 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import time
import uuid
from dataclasses import dataclass

import httpx
import redis

from load_tests._gateway import BENCH_DIR, GatewayProcess, demo_config, demo_database

HEADERS = {"X-Trino-User": "admin", "X-Trino-Catalog": "demo", "X-Trino-Schema": "tpch"}
MAX_QUERIES = 1_000_000
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Run:
    workers: int
    queries: int
    failures: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.queries / self.seconds


async def point_client(url: str, deadline: float, counts: list[int], customers: int) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        while time.monotonic() < deadline and counts[0] < MAX_QUERIES:
            sql = f"SELECT * FROM customer WHERE c_custkey = {random.randint(1, customers)}"
            body = (await http.post(f"{url}/v1/statement", content=sql, headers=HEADERS)).json()
            while "nextUri" in body and "error" not in body:
                body = (await http.get(body["nextUri"], headers=HEADERS)).json()
            counts[0 if "error" not in body else 1] += 1


async def paged_client(url: str, deadline: float, counts: list[int]) -> None:
    while time.monotonic() < deadline and counts[0] < MAX_QUERIES:
        async with httpx.AsyncClient(timeout=30) as http:
            body = (await http.post(f"{url}/v1/statement", content="SELECT * FROM nation", headers=HEADERS)).json()
        while "nextUri" in body and "error" not in body:
            async with httpx.AsyncClient(timeout=30) as http:  # a new connection per poll: any worker answers
                body = (await http.get(body["nextUri"], headers=HEADERS)).json()
        counts[0 if "error" not in body else 1] += 1


async def drive(url: str, seconds: float, clients: int, paged: int) -> tuple[int, int, float]:
    counts = [0, 0]
    began = time.monotonic()
    deadline = began + seconds
    await asyncio.gather(*(point_client(url, deadline, counts, 1500) for _ in range(clients)),
                         *(paged_client(url, deadline, counts) for _ in range(paged)))
    return counts[0], counts[1], time.monotonic() - began


def measure(workers: int, seconds: float, clients: int, paged: int) -> Run:
    database = demo_database(0.01)
    workdir = BENCH_DIR / f"workers-{workers}"
    shutil.rmtree(workdir, ignore_errors=True)
    prefix = f"bench:workers:{uuid.uuid4().hex}:"
    config = demo_config(database, protocol={"inline_first_page": True, "page_rows": 5},
                         cache={"enabled": False}, logging={"level": "WARNING"},
                         server={"workers": workers}, workload={"redis": REDIS_URL, "key_prefix": prefix})
    process = GatewayProcess(workdir, config)
    try:
        deadline = time.monotonic() + 60
        while _answering(process.url) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        asyncio.run(drive(process.url, 2, clients, 0))  # warm-up
        queries, failures, elapsed = asyncio.run(drive(process.url, seconds, clients, paged))
    finally:
        process.stop()
        with redis.Redis.from_url(REDIS_URL) as client:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
    return Run(workers, queries, failures, elapsed)


def _answering(url: str) -> int:
    seen = set()
    for _ in range(20):
        with httpx.Client(timeout=5) as http:
            seen.add(http.get(f"{url}/v1/node").json()[0]["nodeId"])
    return len(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--paged", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    runs = [measure(workers, args.seconds, args.clients, args.paged) for _ in range(args.rounds)
            for workers in (1, 2, 2, 1)]
    for run in runs:
        print(f"workers={run.workers}: {run.queries} queries in {run.seconds:.1f}s = {run.rate:.0f}/s "
              f"({run.failures} failed)")
    rate = {n: sum(r.queries for r in runs if r.workers == n) / sum(r.seconds for r in runs if r.workers == n)
            for n in (1, 2)}
    print(f"workers=1: {rate[1]:.0f}/s  workers=2: {rate[2]:.0f}/s  ratio workers=2 / workers=1: "
          f"{rate[2] / rate[1]:.2f}x")
    return 0 if not any(run.failures for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
