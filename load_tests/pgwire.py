"""Benchmark: a `pgbench -n -S`-style point query over the PostgreSQL wire protocol, through the gateway beside
the same script against PostgreSQL directly and through PgBouncer.

    .venv/bin/python -m load_tests.pgwire [--clients 4] [--seconds 10] [--scale 0.01] [--protocols simple,extended]

A database of its own on 127.0.0.1:5432 (TPC-H from the demo file, primary key on orders; dropped at the
end), a PgBouncer of its own (transaction pooling, its config in data/bench/pgbouncer-<port>/; Debian's
`pgbouncer`, installed with one `apt-get install -y pgbouncer` attempt when missing; never the system
service) and a gateway on free ports (HTTP and pgwire) over it, result cache off, policies on. pgbench runs
one custom script (a random order key per transaction, like `-S`'s random aid), per protocol:

    postgres direct    pgbench -> PostgreSQL, as the read-only role the gateway uses
    pgbouncer          pgbench -> PgBouncer -> PostgreSQL, the same role
    gateway admin      pgbench -> gateway pgwire -> PostgreSQL; admin has no row filter
    gateway alice      the same for alice, whose orders are row-filtered behind the security barrier

tps and average latency per path, and each path's tps as a ratio of the direct one measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def find_pgbouncer() -> str | None:
    """pgbouncer (Debian installs it in /usr/sbin); otherwise one `apt-get install -y pgbouncer` attempt as
    root. The package's own service is never started: the benchmark runs its own process."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found or shutil.which("apt-get") is None or os.geteuid() != 0:
        return found
    print("pgbouncer not found; trying `apt-get install -y pgbouncer` once ...", flush=True)
    try:
        subprocess.run(["apt-get", "install", "-y", "pgbouncer"], check=False, capture_output=True, timeout=300,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


@contextmanager
def pgbouncer(binary: str, *, database: str, user: str, clients: int) -> Iterator[int]:
    """A PgBouncer of the benchmark's own in front of 127.0.0.1:5432 (trust, as the local server): its port."""
    port = free_port()
    work = REPO / "data" / "bench" / f"pgbouncer-{port}"
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o777)  # pgbouncer refuses to run as root: it drops to `nobody`, who writes its pid file here
    (work / "userlist.txt").write_text(f'"{user}" ""\n')
    (work / "pgbouncer.ini").write_text(
        f"[databases]\n{database} = host=127.0.0.1 port=5432 dbname={database}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {work / 'userlist.txt'}\npool_mode = transaction\n"
        f"default_pool_size = {clients}\nmax_client_conn = {clients * 4}\npidfile = {work / 'pgbouncer.pid'}\n"
        f"logfile = {work / 'pgbouncer.log'}\n")
    for name in ("userlist.txt", "pgbouncer.ini"):
        (work / name).chmod(0o644)
    command = [binary, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(work / "pgbouncer.ini")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)], check=False).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (work / "pgbouncer.log").read_text() if (work / "pgbouncer.log").exists() else ""
                raise RuntimeError(f"pgbouncer did not start:\n{log[-2000:]}")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--protocols", default="simple,extended",
                        help="pgbench -M modes, comma-separated (simple, extended, prepared)")
    args = parser.parse_args()
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    bouncer = find_pgbouncer()
    if bouncer is None:
        print("pgbouncer is missing and could not be installed (apt-get install -y pgbouncer): its rows are absent")

    warehouse = PgWarehouse(demo_database(args.scale))
    results: dict[tuple[str, str], tuple[float, float, int]] = {}
    try:
        warehouse.sql("ALTER TABLE tpch.orders ADD PRIMARY KEY (o_orderkey); ANALYZE tpch.orders")
        max_key = int(warehouse.sql("SELECT max(o_orderkey) FROM tpch.orders").strip())
        with tempfile.TemporaryDirectory() as work:
            script = Path(work) / "point.sql"
            script.write_text(SCRIPT.format(max_key=max_key))
            run = {"clients": args.clients, "seconds": args.seconds}
            for protocol in protocols:
                results[("postgres direct", protocol)] = pgbench(
                    script, host="127.0.0.1", port=5432, user=warehouse.reader, database=warehouse.database,
                    protocol=protocol, **run)
            if bouncer is not None:
                with pgbouncer(bouncer, database=warehouse.database, user=warehouse.reader,
                               clients=args.clients) as port:
                    for protocol in protocols:
                        results[("pgbouncer", protocol)] = pgbench(
                            script, host="127.0.0.1", port=port, user=warehouse.reader,
                            database=warehouse.database, protocol=protocol, **run)
            config = {"backends": {"pg": {"type": "postgres", "dsn": warehouse.dsn}},
                      "policies": {"dir": str(REPO / "policies")}, "cache": {"enabled": False},
                      "logging": {"level": "WARNING"}, "server": {"pgwire_port": True}}  # the port: picked there
            gateway = GatewayProcess(Path(work), config)
            assert gateway.pgwire_port is not None
            pg_port = gateway.pgwire_port
            try:
                for user in ("admin", "alice"):
                    for protocol in protocols:
                        results[(f"gateway {user}", protocol)] = pgbench(
                            script, host=gateway.host, port=pg_port, user=user, database="pg", protocol=protocol,
                            **run)
            finally:
                gateway.stop()
    finally:
        warehouse.drop()
    print(f"pgbench point query (sf{args.scale:g}, {args.clients} clients, {args.seconds} s per run, cache off, "
          f"policies on)")
    print("| path | protocol | tps | latency ms | failed | tps / direct |")
    print("|---|---|--:|--:|--:|--:|")
    for (name, protocol), (tps, latency, failed) in results.items():
        base = results[("postgres direct", protocol)][0]
        print(f"| {name:<16} | {protocol:<9} | {tps:9.1f} | {latency:10.3f} | {failed:6d} | {tps / base:12.3f} |")


if __name__ == "__main__":
    main()
