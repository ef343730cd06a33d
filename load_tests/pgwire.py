"""Benchmark: a `pgbench -n -S`-style point query over the PostgreSQL wire protocol, through the gateway beside
the same script against PostgreSQL directly.

    .venv/bin/python -m load_tests.pgwire [--clients 4] [--seconds 10] [--scale 0.01] [--protocol simple]

A database of its own on 127.0.0.1:5432 (TPC-H from the demo file, primary key on orders; dropped at the
end) and a gateway on free ports (HTTP and pgwire) over it, result cache off, policies on. pgbench runs one
custom script (a random order key per transaction, like `-S`'s random aid):

    postgres direct    pgbench -> PostgreSQL, as the read-only role the gateway uses
    gateway admin      pgbench -> gateway pgwire -> PostgreSQL; admin has no row filter
    gateway alice      the same for alice, whose orders are row-filtered behind the security barrier

tps and average latency per path, and each gateway path's tps as a ratio of the direct one measured in the
same run. PgBouncer is not installed on this machine, so that column is absent.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from gateway.testing import free_port
from load_tests._gateway import REPO, GatewayProcess, demo_database
from tests.pg_warehouse import PgWarehouse

SCRIPT = """\\set key random(1, {max_key})
SELECT o_orderkey, o_totalprice, o_orderstatus FROM tpch.orders WHERE o_orderkey = :key;
"""


def pgbench(script: Path, *, host: str, port: int, user: str, database: str, clients: int, seconds: int,
            protocol: str) -> tuple[float, float, int]:
    """(tps, average latency ms, failed transactions) of one pgbench run."""
    done = subprocess.run(["pgbench", "-n", "-f", str(script), "-c", str(clients), "-j", str(min(clients, 2)),
                           "-T", str(seconds), "-M", protocol, "-h", host, "-p", str(port), "-U", user, database],
                          capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    tps = float(re.search(r"tps = ([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", done.stdout).group(1))  # type: ignore[union-attr]
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    return tps, latency, int(failed.group(1)) if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--protocol", choices=("simple", "extended", "prepared"), default="simple")
    args = parser.parse_args()

    warehouse = PgWarehouse(demo_database(args.scale))
    results: dict[str, tuple[float, float, int]] = {}
    try:
        warehouse.sql("ALTER TABLE tpch.orders ADD PRIMARY KEY (o_orderkey); ANALYZE tpch.orders")
        max_key = int(warehouse.sql("SELECT max(o_orderkey) FROM tpch.orders").strip())
        with tempfile.TemporaryDirectory() as work:
            script = Path(work) / "point.sql"
            script.write_text(SCRIPT.format(max_key=max_key))
            run = {"clients": args.clients, "seconds": args.seconds, "protocol": args.protocol}
            results["postgres direct"] = pgbench(script, host="127.0.0.1", port=5432, user=warehouse.reader,
                                                 database=warehouse.database, **run)
            pg_port = free_port()
            config = {"backends": {"pg": {"type": "postgres", "dsn": warehouse.dsn}},
                      "policies": {"dir": str(REPO / "policies")}, "cache": {"enabled": False},
                      "logging": {"level": "WARNING"}, "server": {"pgwire_port": pg_port}}
            gateway = GatewayProcess(Path(work), config)
            try:
                for user in ("admin", "alice"):
                    results[f"gateway {user}"] = pgbench(script, host=gateway.host, port=pg_port, user=user,
                                                         database="pg", **run)
            finally:
                gateway.stop()
    finally:
        warehouse.drop()
    print(f"pgbench point query (sf{args.scale:g}, {args.clients} clients, {args.seconds} s, -M {args.protocol}, "
          f"cache off, policies on)")
    print(f"{'path':<16} {'tps':>9} {'latency ms':>11} {'failed':>7} {'tps / direct':>13}")
    base = results["postgres direct"][0]
    for name, (tps, latency, failed) in results.items():
        print(f"{name:<16} {tps:9.1f} {latency:11.3f} {failed:7d} {tps / base:13.3f}")


if __name__ == "__main__":
    main()
