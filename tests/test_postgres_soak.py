"""Soak (slow): cancel storms on a PostgreSQL backend with a small pool. Twice as many sleeping queries as
pooled connections are started and cancelled, round after round, some while running on the server and
some while still waiting for a connection; after each round nothing is left running on the server, the
gateway holds no more connections than its pool and control connection, and the next query is answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import GatewayProcess
from tests.pg_warehouse import PgWarehouse, available
from tests.test_postgres_backend import policies_dir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not available(), reason="PostgreSQL on 127.0.0.1:5432 is required")]

POOL_SIZE = 3
ROUNDS = 15


@pytest.fixture(scope="module")
def warehouse(demo_database: Path) -> Iterator[PgWarehouse]:
    created = PgWarehouse(demo_database)
    try:
        created.sql("CREATE SCHEMA slow; CREATE VIEW slow.sleepy AS SELECT 1 AS slept FROM pg_sleep(20)")
        created.grant_all("slow")
        yield created
    finally:
        created.drop()


def server_state(warehouse: PgWarehouse) -> tuple[int, int]:
    """(statements of the gateway's role running on the server, its connections)."""
    async def read() -> tuple[int, int]:
        connection = await asyncpg.connect(warehouse.admin_dsn)
        try:
            row = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FROM pg_stat_activity "
                "WHERE usename = $1", warehouse.reader)
            assert row is not None
            return int(row[0]), int(row[1])
        finally:
            await connection.close()

    return asyncio.run(read())


def test_cancel_storms_leave_nothing_behind(warehouse: PgWarehouse, tmp_path: Path) -> None:
    config = {"backends": {"pg": {"type": "postgres", "dsn": warehouse.dsn, "pool_size": POOL_SIZE}},
              "policies": {"dir": str(policies_dir(tmp_path / "policies"))}, "protocol": {"max_wait_seconds": 0.1},
              "cache": {"enabled": False}}
    gateway = GatewayProcess(tmp_path, config)
    headers = {"X-Trino-User": "alice", "X-Trino-Catalog": "pg", "X-Trino-Schema": "slow"}
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            for _ in range(ROUNDS):
                pages = [client.post("/v1/statement", content="SELECT * FROM sleepy", headers=headers).json()
                         for _ in range(2 * POOL_SIZE)]
                pages = [client.get(p["nextUri"], headers=headers).json() for p in pages]
                deadline = time.monotonic() + 10
                while server_state(warehouse)[0] < POOL_SIZE and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert server_state(warehouse)[0] == POOL_SIZE  # the pool is the bound; the rest wait
                for page in pages:
                    assert client.delete(page["nextUri"], headers=headers).status_code == 204
                deadline = time.monotonic() + 10  # a queued query freed by a cancel may start before its own DELETE
                while server_state(warehouse)[0] and time.monotonic() < deadline:
                    time.sleep(0.05)
                running, connections = server_state(warehouse)
                assert running == 0 and connections <= POOL_SIZE + 1
            page = client.post("/v1/statement", content="SELECT count(*) FROM tpch.nation", headers=headers).json()
            while "nextUri" in page:
                page = client.get(page["nextUri"], headers=headers).json()
                if "data" in page:
                    assert page["data"] == [[25]]
            assert page["stats"]["state"] == "FINISHED"
    finally:
        gateway.stop()
