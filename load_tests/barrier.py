"""Benchmark: what the security barrier costs on the 22 TPC-H queries, against the unfenced secure view.

    .venv/bin/python -m load_tests.barrier [--repeat 20] [--user alice] [--scale 0.01]

Both designs are planned by the same planner in the same run; the reference swaps in the view the gateway
built before the barrier (`SELECT <columns or masks> FROM t WHERE <filter>`, which leaks through errors).
Per query: planning (warm secure views, no plan cache) and execution on DuckDB in-process (the same file,
read-only, 2 threads), each p50 over `--repeat` runs; then p50 and p99 over all samples, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from unittest import mock

import duckdb
from sqlglot import exp

from gateway import __version__
from gateway.backends.duckdb import DuckDBBackend
from gateway.mask_key import MaskKey
from gateway.metadata import build_metadata
from gateway.metrics import Metrics
from gateway.planner import Planner, PolicyContext
from gateway.policy.load import load_dev_users, load_policies
from gateway.session import Session
from gateway.sql import rewrite
from gateway.sql.rewrite import SecureViews
from load_tests._gateway import REPO, demo_database
from load_tests.rewrite import QUERIES, percentile, read_tables, timed


def unfenced(source: exp.Table, raw_columns: Sequence[str], projections: Sequence[tuple[str, exp.Expr]],
             visible: exp.Expr | None, *, dialect: str = "duckdb") -> exp.Select:
    """The secure view before the barrier: the filter in WHERE, nothing guarding the columns."""
    select = exp.select(*[exp.alias_(e, exp.to_identifier(n, quoted=True)) for n, e in projections]).from_(source)
    return select.where(visible) if visible is not None else select


def run(connection: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return connection.execute(sql).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--user", default="alice")
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args()

    path = demo_database(args.scale)
    backend = DuckDBBackend(name="demo", path=path)
    snapshot = build_metadata(asyncio.run(read_tables(backend)), workers=1).snapshot
    policy = load_policies(REPO / "policies")
    identity = load_dev_users(REPO / "policies" / "dev_users.yaml")[args.user]
    session = Session(user=args.user, catalog="demo", schema="tpch")
    key = MaskKey.generate()
    connection = duckdb.connect(str(path), read_only=True)
    connection.execute("SET threads = 2")

    def plan_with(views: SecureViews) -> Callable[[str], str]:
        planner = Planner(backends={"demo": backend}, default_catalog="demo", version=__version__,
                          metrics=Metrics(), mask_key=key, cache_size=1)
        counter = iter(range(10**9))

        def plan(sql: str) -> str:
            text = f"{sql}\n-- {next(counter)}"  # distinct text: the plan cache cannot answer
            planned = planner.plan(text, session=session, identity=identity, snapshot=snapshot,
                                   policy=PolicyContext(policy, views))
            assert planned.sql is not None
            return key.reveal(planned.sql)
        return plan

    fenced_plan = plan_with(SecureViews())
    with mock.patch.object(rewrite, "fenced", unfenced):
        reference_views = SecureViews()
        reference_plan = plan_with(reference_views)
        reference_sql = {q.stem: reference_plan(q.read_text()) for q in QUERIES}
    print(f"gateway {__version__}: barrier cost per TPC-H query for {args.user} at sf{args.scale:g}, "
          f"{args.repeat} runs each, ms (p50)")
    print(f"{'query':<6} {'plan ref':>9} {'plan new':>9} {'exec ref':>9} {'exec new':>9} {'exec ratio':>11}")
    totals: dict[str, list[float]] = {"plan ref": [], "plan new": [], "exec ref": [], "exec new": []}
    for query in QUERIES:
        sql = query.read_text()
        new_sql = fenced_plan(sql)
        old_sql = reference_sql[query.stem]
        assert connection.execute(new_sql).fetchall() == connection.execute(old_sql).fetchall(), query.stem
        with mock.patch.object(rewrite, "fenced", unfenced):
            plan_ref = timed(partial(reference_plan, sql), args.repeat)
        plan_new = timed(partial(fenced_plan, sql), args.repeat)
        exec_ref = timed(partial(run, connection, old_sql), args.repeat)
        exec_new = timed(partial(run, connection, new_sql), args.repeat)
        for name, samples in zip(totals, (plan_ref, plan_new, exec_ref, exec_new), strict=True):
            totals[name] += samples
        print(f"{query.stem:<6} {percentile(plan_ref, .5):9.2f} {percentile(plan_new, .5):9.2f} "
              f"{percentile(exec_ref, .5):9.2f} {percentile(exec_new, .5):9.2f} "
              f"{percentile(exec_new, .5) / percentile(exec_ref, .5):10.2f}x")
    print()
    for stage in ("plan", "exec"):
        ref, new = totals[f"{stage} ref"], totals[f"{stage} new"]
        print(f"{stage:<5} p50 {percentile(ref, .5):7.2f} -> {percentile(new, .5):7.2f} ms "
              f"({percentile(new, .5) / percentile(ref, .5):.2f}x)   p99 {percentile(ref, .99):7.2f} -> "
              f"{percentile(new, .99):7.2f} ms ({percentile(new, .99) / percentile(ref, .99):.2f}x)")
    connection.close()


if __name__ == "__main__":
    main()
