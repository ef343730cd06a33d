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
from pathlib import Path
from typing import Any

from load_tests._gateway import REPO, GatewayProcess, demo_database
from load_tests.postgres import POINT, sampled, through_gateway
from load_tests.rewrite import percentile
from tests.fakesnow_warehouse import FakeSnow, load_tpch


def direct(fake: FakeSnow) -> Any:
    connection = fake.connect(database=fake.database)
    cursor = connection.cursor()

    def run(key: int) -> object:
        cursor.execute(POINT.format(key=key))
        return cursor.fetchall()

    return run


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
    print(f"point query on Snowflake (fakesnow, sf{args.scale:g}, {args.repeat} runs, distinct keys, cache off), ms")
    print(f"{'path':<17} {'p50':>7} {'p99':>7}")
    for name, samples in results.items():
        print(f"{name:<17} {percentile(samples, .5):7.2f} {percentile(samples, .99):7.2f}")
    base = results["connector direct"]
    for user in ("admin", "alice"):
        mine = results[f"gateway {user}"]
        print(f"added by the gateway ({user}): p50 {percentile(mine, .5) - percentile(base, .5):+.2f} ms, "
              f"p99 {percentile(mine, .99) - percentile(base, .99):+.2f} ms")


if __name__ == "__main__":
    main()
