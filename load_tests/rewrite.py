"""Benchmark: planning cost per TPC-H query (parse + resolve + functions + secure rewrite + generate).

    .venv/bin/python -m load_tests.rewrite [--repeat 200] [--user alice]

Three figures per query, each p50 and p99 over `--repeat` runs, in-process (no HTTP, no backend):
- cold: a fresh secure-view cache and no plan cache (the first time anyone sends this statement);
- warm: secure views already built, plan cache off (a new statement from a known identity);
- cached: the plan cache hit a repeated dashboard statement takes (key build + lookup).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from gateway import __version__
from gateway.backends.duckdb import DuckDBBackend
from gateway.catalog import CatalogSnapshot
from gateway.identity import Identity
from gateway.mask_key import MaskKey
from gateway.metadata import build_metadata
from gateway.metrics import Metrics
from gateway.planner import Planner, PolicyContext
from gateway.policy.load import load_dev_users, load_policies
from gateway.policy.model import PolicySet
from gateway.relations import Table
from gateway.session import Session
from gateway.sql.rewrite import SecureViews
from load_tests._gateway import REPO, demo_database

QUERIES = sorted((REPO / "tests" / "tpch").glob("q*.sql"))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def read_tables(backend: DuckDBBackend) -> dict[str, list[Table]]:
    await backend.start()
    try:
        return {"demo": await backend.tables()}
    finally:
        await backend.close()


def measure(sql: str, *, new_planner: Callable[[int], Planner], session: Session, identity: Identity,
            snapshot: CatalogSnapshot, policy: PolicySet, repeat: int) -> tuple[list[float], list[float], list[float]]:
    """(cold, warm, cached) planning times of `sql` in ms."""
    views = SecureViews()
    uncached = new_planner(1)  # a cache of one entry: every distinct statement misses
    texts = iter(f"{sql}\n-- {n}" for n in range(repeat))  # distinct texts, so the plan cache cannot answer

    def cold() -> None:
        new_planner(1).plan(sql, session=session, identity=identity, snapshot=snapshot,
                            policy=PolicyContext(policy, SecureViews()))

    def warm() -> None:
        uncached.plan(next(texts), session=session, identity=identity, snapshot=snapshot,
                      policy=PolicyContext(policy, views))

    hits = new_planner(64)
    context = PolicyContext(policy, views)
    hits.plan(sql, session=session, identity=identity, snapshot=snapshot, policy=context)

    def cached() -> None:
        hits.plan(sql, session=session, identity=identity, snapshot=snapshot, policy=context)

    return timed(cold, repeat), timed(warm, repeat), timed(cached, repeat * 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--user", default="alice", help="a dev user from policies/dev_users.yaml")
    args = parser.parse_args()

    backend = DuckDBBackend(name="demo", path=demo_database(0.01))
    metadata = build_metadata(asyncio.run(read_tables(backend)), workers=1)
    snapshot = metadata.snapshot
    policy = load_policies(REPO / "policies")
    identity = load_dev_users(REPO / "policies" / "dev_users.yaml")[args.user]
    session = Session(user=args.user, catalog="demo", schema="tpch")

    def planner(cache_size: int) -> Planner:
        return Planner(backends={"demo": backend}, default_catalog="demo", version=__version__, metrics=Metrics(),
                       mask_key=MaskKey.generate(), cache_size=cache_size)

    print(f"gateway {__version__}: planning per TPC-H query for {args.user} "
          f"(groups {sorted(identity.groups)}), {args.repeat} runs each, times in ms")
    print(f"{'query':<6} {'cold p50':>9} {'cold p99':>9} {'warm p50':>9} {'warm p99':>9} "
          f"{'cached p50':>11} {'cached p99':>11}")
    cold_all, warm_all, cached_all = [], [], []
    for path in QUERIES:
        c, w, h = measure(path.read_text(), new_planner=planner, session=session, identity=identity,
                          snapshot=snapshot, policy=policy, repeat=args.repeat)
        cold_all += c
        warm_all += w
        cached_all += h
        print(f"{path.stem:<6} {percentile(c, .5):9.2f} {percentile(c, .99):9.2f} {percentile(w, .5):9.2f} "
              f"{percentile(w, .99):9.2f} {percentile(h, .5) * 1000:9.1f}µs {percentile(h, .99) * 1000:9.1f}µs")
    print(f"{'all':<6} {percentile(cold_all, .5):9.2f} {percentile(cold_all, .99):9.2f} "
          f"{percentile(warm_all, .5):9.2f} {percentile(warm_all, .99):9.2f} "
          f"{percentile(cached_all, .5) * 1000:9.1f}µs {percentile(cached_all, .99) * 1000:9.1f}µs")
    metadata.engine.close()


if __name__ == "__main__":
    main()
