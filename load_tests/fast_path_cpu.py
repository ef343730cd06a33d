"""Benchmark: the CPU time one query costs the gateway, against the trivial responder, in one process.

    .venv/bin/python -m load_tests.fast_path_cpu [--requests 3000] [--scale 0.01]

The wrk figures of `load_tests.fast_path` move with everyone else's load on a shared machine (the gateway's
one event-loop thread waits for a core). This one calls each ASGI application directly — no sockets, no
client, the same request bytes — `--requests` times in a row, 8 at a time (like 8 connections), and divides
the CPU time of the whole process (its audit writer thread included) by the queries answered. Reference: the
trivial responder's application (load_tests/_trivial.py) measured the same way in the same run. Audit (SQLite),
metering and INFO logging are on, logging to a file as `gateway serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import time

import yaml
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from gateway.app import Gateway
from gateway.config import load_settings
from load_tests import _trivial
from load_tests._gateway import BENCH_DIR, demo_config, demo_database
from load_tests.fast_path import DASHBOARD
from load_tests.trino_protocol import fmt, machine_note, ratio

WORKDIR = BENCH_DIR / "fast_path_cpu"
CONCURRENCY = 8


async def post(app: ASGIApp, sql: str) -> bytes:
    """One POST /v1/statement as uvicorn hands it to the application; the response body."""
    body = sql.encode()
    headers = [(b"host", b"127.0.0.1:8080"), (b"x-trino-user", b"admin"), (b"x-trino-catalog", b"demo"),
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


async def cpu_per_query(app: ASGIApp, sql: str, requests: int) -> float:
    """CPU microseconds of this process per answered query; every answer must be a finished one."""
    for _ in range(50):
        await post(app, sql)  # warm: plan and result caches, first-call costs
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            answer = await post(app, sql)
            if b'"FINISHED"' not in answer or b'"error"' in answer or b'"nextUri"' in answer:
                raise RuntimeError(f"not a finished answer: {answer[:300]!r}")

    began = time.process_time()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return (time.process_time() - began) * 1e6 / requests


async def measure(requests: int, scale: float) -> None:
    database = demo_database(scale)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    config = demo_config(database, audit={"store": f"sqlite:///{WORKDIR / 'audit.db'}",
                                          "spool_dir": str(WORKDIR / "spool")},
                         masking={"key_file": str(WORKDIR / "mask.key")})
    (WORKDIR / "gateway.yaml").write_text(yaml.safe_dump(config))
    logging.basicConfig(filename=WORKDIR / "gateway.log", level=logging.INFO)
    trivial: ASGIApp = Starlette(routes=[Route("/v1/statement", _trivial.statement, methods=["POST"])])
    gateway = Gateway(load_settings(WORKDIR / "gateway.yaml"))
    app: ASGIApp = gateway.asgi()
    await gateway.start()
    try:
        reference = await cpu_per_query(trivial, "SELECT 1", requests)
        rows = [("select1", await cpu_per_query(app, "SELECT 1", requests)),
                ("cache_hit", await cpu_per_query(app, DASHBOARD, requests))]
    finally:
        await gateway.stop()
    print(machine_note())
    print(f"\nin-process ASGI calls, {requests} queries, {CONCURRENCY} at a time; CPU of the whole process")
    print(f"{'path':<12} {'cpu us/q':>9} {'x trivial':>10} {'q/s/core':>9}")
    for name, cpu in [("trivial", reference), *rows]:
        print(f"{name:<12} {fmt(cpu):>9} {fmt(ratio(cpu, reference), 2):>10} {fmt(1e6 / cpu):>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--scale", type=float, default=0.01)
    args = parser.parse_args(argv)
    asyncio.run(measure(args.requests, args.scale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
