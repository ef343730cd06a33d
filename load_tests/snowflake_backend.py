"""Benchmark: what the gateway adds to a point query on a Snowflake warehouse (fakesnow's server locally).

    .venv/bin/python -m load_tests.snowflake_backend [--repeat 200] [--scale 0.01]

fakesnow (`make test` installs it into .venv-fakesnow) on a free port holding the demo's TPC-H tables, and a
gateway on a free port serving it as catalog `sf` with the result cache off. The same point query on a
different key each time (`SELECT o_orderkey, o_totalprice, o_orderstatus FROM tpch.orders WHERE o_orderkey = k`):

    connector direct   snowflake-connector-python, one connection: fakesnow plus the connector
    gateway admin      the trino client through the gateway, no row filter: parse, policy, plan, admission,
                       audit, HTTP paging, the backend's pooled connection with QUERY_TAG
    gateway alice      the same for alice, whose orders are row-filtered behind the security barrier

p50 and p99 per path in milliseconds, and the gateway's added latency (gateway p50 minus direct p50). fakesnow
answers in milliseconds where a real account takes tens to hundreds: the absolute figures are the gateway's
overhead, not what users of a real warehouse would see.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from load_tests._gateway import REPO, GatewayProcess, demo_database
from load_tests.postgres import point_queries, report, sampled, through_gateway
from tests.fakesnow_warehouse import FakeSnow, load_tpch


def direct(fake: FakeSnow) -> Callable[[int], object]:
    return point_queries(fake.connect(database=fake.database).cursor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        fake = FakeSnow(Path(work))
        try:
            load_tpch(fake, demo_database(args.scale), Path(work))
            order_keys = [int(r[0]) for r in fake.sql("SELECT O_ORDERKEY FROM TPCH.ORDERS")[0]]
            keys = [random.choice(order_keys) for _ in range(args.repeat)]
            backend = {"type": "snowflake", "account": "bench", "user": "gateway", "database": fake.database,
                       "host": "127.0.0.1", "port": fake.port, "protocol": "http",
                       "password": {"env": "BENCH_SNOWFLAKE_PASSWORD"}}
            config = {"backends": {"sf": backend}, "policies": {"dir": str(REPO / "policies")},
                      "cache": {"enabled": False}, "logging": {"level": "WARNING"}}
            gateway = GatewayProcess(Path(work) / "gw", config, env={"BENCH_SNOWFLAKE_PASSWORD": "fakesnow"})
            try:
                run = direct(fake)
                sampled(run, keys[:20])
                results = {"connector direct": sampled(run, keys)}
                for user in ("admin", "alice"):
                    through = through_gateway(gateway, user, catalog="sf")
                    sampled(through, keys[:20])  # warm: plan cache, pool, secure views
                    results[f"gateway {user}"] = sampled(through, keys)
            finally:
                gateway.stop()
        finally:
            fake.stop()
    report(f"point query on Snowflake (fakesnow, sf{args.scale:g}, {args.repeat} runs, distinct keys, cache off), ms",
           results, direct_path="connector direct")

if __name__ == "__main__":
    main()
