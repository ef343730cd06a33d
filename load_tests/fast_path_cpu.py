"""Benchmark: the CPU time one query costs the gateway, against the trivial responder, in one process.

    .venv/bin/python -m load_tests.fast_path_cpu [--requests 3000] [--scale 0.1] [--user admin] [--isolation thread]

The wrk figures of `load_tests.fast_path` move with everyone else's load on a shared machine (the gateway's one
event-loop thread waits for a core). This one calls each ASGI application directly — no sockets, no client, the
same request bytes — `--requests` times in a row, 8 at a time (like 8 connections), and divides the CPU time of
the whole process (its audit writer thread included) by the queries answered. Reference: the trivial responder's
application (load_tests/_trivial.py) measured the same way in the same run. The point query (a key never asked
before each time, so neither cache helps: the database needs as many customers as queries, 15,000 at the default
scale) is also measured against DuckDB queried in-process, 8 threads, the same statements, its CPU per query the
same way. Audit (SQLite), metering and INFO logging are on, with the log format and garbage-collector tuning of
`gateway serve` (logging to a file instead of stderr). `--user alice` measures a caller with a row filter and
column masks (planning does more).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import threading
import time
from collections.abc import Callable

import duckdb
import yaml
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from gateway.app import Gateway
from gateway.backends.settings import ISOLATIONS
from gateway.config import load_settings
from gateway.logs import configure_logging
from gateway.server import tune_garbage_collector
from load_tests import _trivial
from load_tests._gateway import BENCH_DIR, demo_config, demo_database
from load_tests.fast_path import DASHBOARD, process_cpu_seconds
from load_tests.trino_protocol import SCHEMA, distinct_point_queries, fmt, machine_note, max_customer_key, ratio

WORKDIR = BENCH_DIR / "fast_path_cpu"
CONCURRENCY = 8


async def post(app: ASGIApp, sql: str, user: str = "admin") -> bytes:
    """One POST /v1/statement as uvicorn hands it to the application; the response body."""
    body = sql.encode()
    headers = [(b"host", b"127.0.0.1:8080"), (b"x-trino-user", user.encode()), (b"x-trino-catalog", b"demo"),
               (b"x-trino-schema", b"tpch"), (b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/statement", "raw_path": b"/v1/statement", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "state": {}}
    sent = False
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


WARM_REQUESTS = 50


async def cpu_per_query(app: ASGIApp, sql: str | Callable[[], str], requests: int, user: str = "admin") -> float:
    """CPU microseconds of this process per answered query; every answer must be a finished one. `sql` is one
    statement, or a function giving a new one for each request (WARM_REQUESTS more than `requests`)."""
    statement = sql if callable(sql) else lambda: sql
    for _ in range(WARM_REQUESTS):
        await post(app, statement(), user)  # warm: plan and result caches, first-call costs
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            answer = await post(app, statement(), user)
            if b'"FINISHED"' not in answer or b'"error"' in answer or b'"nextUri"' in answer:
                raise RuntimeError(f"not a finished answer: {answer[:300]!r}")

    began = process_cpu_seconds(os.getpid())
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return (process_cpu_seconds(os.getpid()) - began) * 1e6 / requests


def duckdb_cpu_per_query(database: str, sql: Callable[[], str], requests: int) -> float:
    """The reference for the point query: DuckDB in this process, CONCURRENCY threads with a cursor each."""
    connection = duckdb.connect(database, read_only=True)
    remaining = requests
    lock = threading.Lock()
    failures: list[BaseException] = []

    def client() -> None:
        try:
            answer()
        except BaseException as error:
            failures.append(error)

    def answer() -> None:
        nonlocal remaining
        cursor = connection.cursor()
        cursor.execute(f"USE {SCHEMA}")  # a cursor starts in the default schema
        while True:
            with lock:
                if remaining <= 0:
                    return
                remaining -= 1
            if len(cursor.execute(sql()).fetchall()) != 1:
                raise RuntimeError("the point query did not find its row")

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    began = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = (time.process_time() - began) * 1e6 / requests
    connection.close()
    if failures:
        raise failures[0]
    return cpu


async def measure(requests: int, scale: float, user: str, isolation: str) -> None:
    database = demo_database(scale)
    through, direct_sql = distinct_point_queries(max_customer_key(database), requests + WARM_REQUESTS)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    config = demo_config(database, audit={"store": f"sqlite:///{WORKDIR / 'audit.db'}",
                                          "spool_dir": str(WORKDIR / "spool")},
                         masking={"key_file": str(WORKDIR / "mask.key")})
    config["backends"]["demo"]["isolation"] = isolation
    (WORKDIR / "gateway.yaml").write_text(yaml.safe_dump(config))
    settings = load_settings(WORKDIR / "gateway.yaml")
    log_file = open(WORKDIR / "gateway.log", "w")  # noqa: SIM115 - closed below
    configure_logging(settings.logging, log_file)  # as `gateway serve` logs, to a file instead of stderr
    trivial: ASGIApp = Starlette(routes=[Route("/v1/statement", _trivial.statement, methods=["POST"])])
    gateway = Gateway(settings)
    app: ASGIApp = gateway.asgi()
    await gateway.start()
    tune_garbage_collector()  # as the server does once it has started
    try:
        reference = await cpu_per_query(trivial, "SELECT 1", requests)
        rows = [("select1", await cpu_per_query(app, "SELECT 1", requests, user)),
                ("cache_hit", await cpu_per_query(app, DASHBOARD, requests, user))]
        point_cpu = await cpu_per_query(app, iter(through).__next__, requests, user)
    finally:
        await gateway.stop()
        log_file.close()
        gc.unfreeze()  # what start-up froze is garbage now (DuckDB's bindings report it as leaked otherwise)
    direct = duckdb_cpu_per_query(str(database), iter(direct_sql[WARM_REQUESTS:]).__next__, requests)
    print(machine_note())
    print(f"\nin-process ASGI calls as {user}, {requests} queries, {CONCURRENCY} at a time; CPU of the whole process "
          f"(and of the engine process with --isolation process: {isolation})")
    print(f"{'path':<12} {'cpu us/q':>9} {'x trivial':>10} {'q/s/core':>9}")
    for name, cpu in [("trivial", reference), *rows]:
        print(f"{name:<12} {fmt(cpu):>9} {fmt(ratio(cpu, reference), 2):>10} {fmt(1e6 / cpu):>9}")
    print(f"\n{'path':<12} {'cpu us/q':>9} {'of duckdb':>10} {'q/s/core':>9}")
    for name, cpu in [("duckdb", direct), ("point", point_cpu)]:
        print(f"{name:<12} {fmt(cpu):>9} {fmt(ratio(direct, cpu), 2):>10} {fmt(1e6 / cpu):>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--user", default="admin", help="a dev user of the demo (admin sees every row)")
    parser.add_argument("--isolation", choices=ISOLATIONS, default="thread",
                        help="where the demo backend's DuckDB runs (backends.<name>.isolation)")
    args = parser.parse_args(argv)
    asyncio.run(measure(args.requests, args.scale, args.user, args.isolation))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
