"""Benchmark: the Trino protocol path through the gateway vs. the same queries on DuckDB in-process.

    .venv/bin/python -m load_tests.trino_protocol [--clients 8] [--seconds 10] [--scale 0.01]

For each of a point query, TPC-H Q1 and TPC-H Q6: N client threads, each with its own `trino.dbapi` connection,
run the query in a loop through a gateway subprocess for S seconds; then N threads, each with its own cursor on
one read-only DuckDB connection, run the transpiled query for S seconds. Finally the point query is sent as raw
HTTP (one POST /v1/statement per query) with wrk, or an asyncio httpx loop when wrk is unavailable, to see the
gateway's throughput without the trino client's own per-query cost. Only 127.0.0.1 is ever contacted; every
loop ends by time and by count. See load_tests/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb
import httpx
import sqlglot
import trino

from load_tests._gateway import BENCH_DIR, REPO, GatewayProcess, demo_config, demo_database

SCHEMA = "tpch"
CATALOG = "demo"
USER = "admin"  # every row and column: results comparable with DuckDB direct
TPCH_DIR = REPO / "tests" / "tpch"
LUA_SCRIPT = Path(__file__).resolve().parent / "point_query.lua"
WORKDIR = BENCH_DIR / "trino_protocol"

MAX_QUERIES_PER_CLIENT = 1_000_000  # a count bound on every loop, besides the time bound
MAX_ERRORS_PER_CLIENT = 20  # a client that keeps failing stops early rather than spinning
POINT_KEY_SENTINEL = 987654321  # stands in for the key while transpiling the point query once


# ---------------------------------------------------------------------------------------------------------
# Queries


@dataclass(frozen=True)
class Query:
    """A benchmark query: Trino SQL for the gateway, the transpiled DuckDB SQL, and the rows it must return."""

    name: str
    trino_sql: Callable[[random.Random], str]
    duckdb_sql: Callable[[random.Random], str]
    expected_rows: int


def fixed_query(name: str, sql: str, expected_rows: int) -> Query:
    direct = sqlglot.transpile(sql, read="trino", write="duckdb")[0]
    return Query(name, lambda _: sql, lambda _: direct, expected_rows)


POINT_SQL = "SELECT * FROM customer WHERE c_custkey = {key}"


def _point_duckdb_template() -> str:
    direct = sqlglot.transpile(POINT_SQL.format(key=POINT_KEY_SENTINEL), read="trino", write="duckdb")[0]
    if direct.count(str(POINT_KEY_SENTINEL)) != 1:
        raise RuntimeError(f"unexpected transpilation of the point query: {direct}")
    return direct.replace(str(POINT_KEY_SENTINEL), "{key}")


def _point_keys(max_key: int) -> list[int]:
    return random.Random(17).sample(range(1, max_key + 1), max_key)


def _key_dealer(max_key: int) -> Callable[[], int]:
    """The next key of the benchmark's one shuffled deck, starting over only after all max_key were dealt."""
    return itertools.cycle(_point_keys(max_key)).__next__


def point_query(max_key: int) -> Query:
    """`SELECT * FROM customer WHERE c_custkey = k`, the keys dealt from one shuffled deck of 1..max_key shared by
    every caller (the `rng` argument is not used): no key repeats before all max_key were asked, so the result
    cache answers none of the first max_key executions."""
    direct_template = _point_duckdb_template()
    next_key = _key_dealer(max_key)
    return Query(
        "point",
        lambda _: POINT_SQL.format(key=next_key()),
        lambda _: direct_template.format(key=next_key()),
        expected_rows=1,
    )


def distinct_point_queries(max_key: int, count: int) -> tuple[list[str], list[str]]:
    """`count` point queries with keys that never repeat, as (Trino SQL, DuckDB SQL) lists in the same key order."""
    if count > max_key:
        raise SystemExit(f"{count} point queries need {count} distinct customer keys; the database has {max_key}: "
                         f"use a larger --scale")
    keys = _point_keys(max_key)[:count]
    direct_template = _point_duckdb_template()
    return [POINT_SQL.format(key=k) for k in keys], [direct_template.format(key=k) for k in keys]


def tpch_sql(number: int) -> str:
    return (TPCH_DIR / f"q{number:02d}.sql").read_text().strip().rstrip(";")


def max_customer_key(database: Path) -> int:
    with duckdb.connect(str(database), read_only=True) as connection:
        return int(connection.execute(f"SELECT max(c_custkey) FROM {SCHEMA}.customer").fetchall()[0][0])


def benchmark_queries(database: Path) -> list[Query]:
    """The three queries, with expected row counts taken from DuckDB itself."""
    q1, q6 = tpch_sql(1), tpch_sql(6)
    max_key = max_customer_key(database)
    with duckdb.connect(str(database), read_only=True) as connection:
        connection.execute(f"USE {SCHEMA}")
        rows = {
            name: len(connection.execute(sqlglot.transpile(sql, read="trino", write="duckdb")[0]).fetchall())
            for name, sql in (("tpch-q1", q1), ("tpch-q6", q6))
        }
    return [point_query(max_key), fixed_query("tpch-q1", q1, rows["tpch-q1"]),
            fixed_query("tpch-q6", q6, rows["tpch-q6"])]


# ---------------------------------------------------------------------------------------------------------
# Closed-loop load: N threads, each with its own session, for S seconds


class Session(Protocol):
    def run(self, sql: str) -> int:
        """Execute one statement and fetch every row; return the row count."""

    def close(self) -> None: ...


class TrinoSession:
    def __init__(self, host: str, port: int) -> None:
        self._connection = trino.dbapi.connect(  # type: ignore[no-untyped-call]
            host=host, port=port, user=USER, catalog=CATALOG, schema=SCHEMA, http_scheme="http", request_timeout=60,
        )
        self._cursor = self._connection.cursor()

    def run(self, sql: str) -> int:
        self._cursor.execute(sql)
        return len(self._cursor.fetchall())

    def close(self) -> None:
        self._connection.close()


class DuckDBSession:
    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._cursor = connection.cursor()
        self._cursor.execute(f"USE {SCHEMA}")

    def run(self, sql: str) -> int:
        return len(self._cursor.execute(sql).fetchall())

    def close(self) -> None:
        self._cursor.close()


@dataclass
class Measurement:
    query: str
    path: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful queries only
    errors: int = 0
    first_error: str | None = None

    @property
    def queries(self) -> int:
        return len(self.latencies)

    @property
    def qps(self) -> float:
        return self.queries / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_load(query: Query, path: str, clients: int, seconds: float, open_session: Callable[[], Session]) -> Measurement:
    """N threads, each opening its own session, running one untimed warm-up query, then looping for `seconds`."""
    result = Measurement(query.name, path, clients)
    lock = threading.Lock()
    window: dict[str, float] = {}

    def start_window() -> None:
        window["start"] = time.perf_counter()
        window["deadline"] = window["start"] + seconds

    barrier = threading.Barrier(clients, action=start_window, timeout=120)
    finished_at: list[float] = []

    def record_error(error: BaseException) -> None:
        with lock:
            result.errors += 1
            if result.first_error is None:
                result.first_error = f"{type(error).__name__}: {error}"

    def client(index: int) -> None:
        rng = random.Random(1000 * clients + index)
        make_sql = query.trino_sql if path == "gateway" else query.duckdb_sql
        session: Session | None = None
        try:
            session = open_session()
            session.run(make_sql(rng))  # warm-up: connection setup and first-query costs stay out of the numbers
        except Exception as error:
            record_error(error)
            barrier.abort()
            if session is not None:
                session.close()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            session.close()
            return
        latencies: list[float] = []
        errors = 0
        deadline = window["deadline"]
        try:
            while len(latencies) < MAX_QUERIES_PER_CLIENT and errors < MAX_ERRORS_PER_CLIENT:
                sql = make_sql(rng)
                began = time.perf_counter()
                if began >= deadline:
                    break
                try:
                    rows = session.run(sql)
                except Exception as error:
                    errors += 1
                    record_error(error)
                    continue
                elapsed = time.perf_counter() - began
                if rows != query.expected_rows:
                    errors += 1
                    record_error(RuntimeError(f"{rows} rows, expected {query.expected_rows}"))
                    continue
                latencies.append(elapsed)
        finally:
            ended = time.perf_counter()
            session.close()
            with lock:
                result.latencies.extend(latencies)
                finished_at.append(ended)

    threads = [threading.Thread(target=client, args=(i,), name=f"{path}-{query.name}-{i}", daemon=True)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 180)  # a query stuck past this is reported as an unfinished client below
        if thread.is_alive():
            record_error(TimeoutError(f"{thread.name} still running after {seconds + 180:.0f}s"))
    if "start" in window and finished_at:
        result.seconds = max(finished_at) - window["start"]
    return result


# ---------------------------------------------------------------------------------------------------------
# Raw HTTP: the point query as one POST per query, without the trino client


@dataclass
class HttpResult:
    tool: str
    connections: int
    seconds: float
    requests: int
    finished: int
    failed: int
    p50_ms: float
    p99_ms: float
    note: str = ""

    @property
    def rps(self) -> float:
        return self.finished / self.seconds if self.seconds > 0 else 0.0


def find_wrk(install: bool) -> str | None:
    """wrk on PATH; otherwise one `apt-get install -y wrk` attempt (as root, when allowed), else None."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None
    print("wrk not found; trying `apt-get install -y wrk` once ...", flush=True)
    try:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("wrk")


def run_wrk(wrk: str, url: str, connections: int, seconds: float, max_key: int, *, script: Path = LUA_SCRIPT,
            script_args: list[str] | None = None) -> HttpResult:
    """wrk against `url`/v1/statement with a Lua script that prints a BENCH line (point_query.lua by default,
    whose arguments are the key range, schema, user and wrk's thread count)."""
    threads = max(1, min(connections, os.cpu_count() or 1))
    duration = max(1, round(seconds))
    arguments = script_args if script_args is not None else [str(max_key), SCHEMA, USER, str(threads)]
    command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
               "-s", str(script), f"{url}/v1/statement", "--", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((text for text in completed.stdout.splitlines() if text.startswith("BENCH ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    values = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}
    socket_errors = sum(values[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    note = f"{threads} wrk threads"
    if socket_errors:
        note += (f"; socket errors connect={values['connect_errors']} read={values['read_errors']} "
                 f"write={values['write_errors']} timeout={values['timeouts']}")
    return HttpResult("wrk", connections, values["duration_us"] / 1e6, values["requests"], values["finished"],
                      values["failed"] + socket_errors, values["p50_us"] / 1000, values["p99_us"] / 1000, note)


async def _httpx_load(url: str, connections: int, seconds: float, max_key: int) -> HttpResult:
    headers = {"X-Trino-User": USER, "X-Trino-Catalog": CATALOG, "X-Trino-Schema": SCHEMA}
    next_key = _key_dealer(max_key)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    failed = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=10) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal failed
            count = 0
            while count < MAX_QUERIES_PER_CLIENT and time.perf_counter() < deadline:
                count += 1
                sql = POINT_SQL.format(key=next_key())
                began = time.perf_counter()
                try:
                    response = await client.post("/v1/statement", content=sql)
                    body: dict[str, Any] = response.json()
                except (httpx.HTTPError, ValueError):
                    failed += 1
                    continue
                elapsed = time.perf_counter() - began
                ok = (response.status_code == 200 and body.get("stats", {}).get("state") == "FINISHED"
                      and "error" not in body and "nextUri" not in body)
                if ok:
                    latencies.append(elapsed)
                else:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed_total = time.perf_counter() - start
    return HttpResult("httpx (asyncio)", connections, elapsed_total, len(latencies) + failed, len(latencies),
                      failed, percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000,
                      "one client process; it may be the bottleneck")


def check_single_response(url: str) -> None:
    """The raw-HTTP numbers only mean whole queries if the point query is answered in its first response."""
    headers = {"X-Trino-User": USER, "X-Trino-Catalog": CATALOG, "X-Trino-Schema": SCHEMA}
    body = httpx.post(f"{url}/v1/statement", content="SELECT * FROM customer WHERE c_custkey = 1",
                      headers=headers, timeout=30).json()
    if body.get("stats", {}).get("state") != "FINISHED" or "nextUri" in body or "error" in body:
        raise RuntimeError(f"point query not answered in one response: state={body.get('stats', {}).get('state')}"
                           f" nextUri={'nextUri' in body} error={body.get('error')}")


# ---------------------------------------------------------------------------------------------------------
# Report


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN -> "-"


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 and a == a and b == b else float("nan")


def print_table(pairs: list[tuple[Measurement, Measurement]]) -> None:
    header = ("query", "path", "clients", "queries", "errors", "qps", "p50 ms", "p99 ms", "p50 gw/direct",
              "qps gw/direct")
    rows: list[tuple[str, ...]] = []
    for gateway, direct in pairs:
        p50_ratio = ratio(gateway.percentile_ms(50), direct.percentile_ms(50))
        qps_ratio = ratio(gateway.qps, direct.qps)
        for m, extra in ((gateway, (f"{fmt(p50_ratio, 2)}x", f"{fmt(qps_ratio, 3)}x")), (direct, ("", ""))):
            rows.append((m.query, m.path, str(m.clients), f"{m.queries:,}", str(m.errors), fmt(m.qps),
                         fmt(m.percentile_ms(50), 2), fmt(m.percentile_ms(99), 2), *extra))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row).rstrip())
    for gateway, direct in pairs:
        for m in (gateway, direct):
            if m.first_error:
                print(f"  first error ({m.query}, {m.path}): {m.first_error[:300]}")


def print_http(result: HttpResult) -> None:
    print(f"raw HTTP point query ({result.tool}, {result.connections} connections, {result.seconds:.1f}s"
          f"{'; ' + result.note if result.note else ''}):")
    print(f"  requests {result.requests:,}  finished {result.finished:,}  failed {result.failed:,}  "
          f"req/s {fmt(result.rps)}  p50 {fmt(result.p50_ms, 2)} ms  p99 {fmt(result.p99_ms, 2)} ms")


def machine_note() -> str:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (f"machine: {cores} cores ({usable} usable), {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, duckdb {duckdb.__version__}, trino client {trino.__version__}; "
            f"clients, gateway and DuckDB share these cores")


# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.trino_protocol", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client sessions (default 8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per query and path (default 10)")
    parser.add_argument("--scale", type=float, default=0.01, help="TPC-H scale factor (default 0.01)")
    parser.add_argument("--http-tool", choices=("auto", "wrk", "httpx", "none"), default="auto",
                        help="raw HTTP load generator: auto = wrk if installed (one apt-get attempt), else httpx")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256:
        parser.error("--clients must be between 1 and 256")
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")

    began = time.monotonic()
    print(f"building/reusing TPC-H sf{args.scale:g} under {BENCH_DIR} ...", flush=True)
    database = demo_database(args.scale, SCHEMA)
    queries = benchmark_queries(database)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    for old in (*WORKDIR.glob("gateway-*.log"), *WORKDIR.glob("gateway-*.yaml")):
        old.unlink()

    pairs: list[tuple[Measurement, Measurement]] = []
    http: HttpResult | None = None
    http_note = ""
    # The result cache is off: this scenario measures the protocol and backend path (load_tests/cache.py: hits).
    with GatewayProcess(WORKDIR, demo_config(database, SCHEMA, cache={"enabled": False})) as gateway:
        version = gateway.version()
        print(f"gateway {version} at {gateway.url} (log: {gateway.log_path})", flush=True)
        direct_connection = duckdb.connect(str(database), read_only=True)
        try:
            for query in queries:
                print(f"  {query.name}: gateway ...", end="", flush=True)
                through_gateway = run_load(query, "gateway", args.clients, args.seconds,
                                           lambda: TrinoSession(gateway.host, gateway.port))
                print(" direct ...", end="", flush=True)
                direct = run_load(query, "direct", args.clients, args.seconds,
                                  lambda: DuckDBSession(direct_connection))
                print(" done", flush=True)
                pairs.append((through_gateway, direct))
        finally:
            direct_connection.close()

        if args.http_tool != "none":
            max_key = max_customer_key(database)
            check_single_response(gateway.url)
            wrk = find_wrk(install=args.http_tool == "auto") if args.http_tool in ("auto", "wrk") else None
            if args.http_tool == "wrk" and wrk is None:
                raise SystemExit("wrk is not installed")
            print(f"  raw HTTP: {'wrk' if wrk else 'httpx'} ...", flush=True)
            if wrk:
                http = run_wrk(wrk, gateway.url, args.clients, args.seconds, max_key)
            else:
                http_note = "wrk unavailable; " if args.http_tool == "auto" else ""
                http = asyncio.run(_httpx_load(gateway.url, args.clients, args.seconds, max_key))
        exit_code = gateway.stop()
        log = gateway.log()
    clean = "Finished server process" in log
    problems = sum(1 for text in log.splitlines() if " ERROR " in text or text.startswith("Traceback"))

    print()
    print(f"gateway version {version}; TPC-H sf{args.scale:g}; {args.clients} clients; {args.seconds:g}s per run")
    print(machine_note())
    print()
    print_table(pairs)
    if http is not None:
        print()
        if http_note:
            print(http_note.rstrip("; "))
        print_http(http)
    print()
    how = "cleanly" if clean else "NOT cleanly"
    print(f"gateway stopped {how} (exit code {exit_code}; -15 is SIGTERM after a graceful shutdown); "
          f"{problems} ERROR/Traceback lines in its log; total {time.monotonic() - began:.0f}s")
    failed = any(m.errors or m.queries == 0 for pair in pairs for m in pair) or (http is not None and http.failed)
    return 1 if failed or problems or not clean else 0


if __name__ == "__main__":
    sys.exit(main())
