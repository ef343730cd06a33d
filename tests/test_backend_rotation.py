"""A backend password rotated under load: no query fails, and once drained the old password is never used.

The server is a PostgreSQL cluster of the module's own that checks passwords (tests/pg_password_server.py:
the shared one trusts every login, so it could not tell the passwords apart). Its role's password is changed
with ALTER ROLE while six clients run queries through the gateway, some of them holding their connection across
the rotation; the new password reaches the gateway as a Kubernetes-style symlink swap of a mounted file, or
through a command. Afterwards every server session of the role started after the rotation (pg_stat_activity),
and the old password is refused by the server.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import trino

from gateway.testing import GatewayProcess
from tests.pg_password_server import PasswordPostgres, binaries_available
from tests.test_backend_credentials import kubernetes_secret
from tests.test_backend_resilience import policies

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not binaries_available(), reason="needs the PostgreSQL server binaries")]

CLIENTS = 6
LOAD_SECONDS = 1.5


class RotatingRole:
    def __init__(self, server: PasswordPostgres) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.server = server
        self.role, self.database = f"gw_rot_{suffix}", f"gw_rot_db_{suffix}"
        self.password = f"pw-1-{uuid.uuid4().hex}"
        server.psql(f"CREATE ROLE {self.role} LOGIN PASSWORD '{self.password}'")
        server.psql(f"CREATE DATABASE {self.database}")
        self.admin_dsn = server.admin_dsn.rsplit("/", 1)[0] + f"/{self.database}"
        asyncio.run(self._sql(f"CREATE SCHEMA s; CREATE TABLE s.numbers AS SELECT generate_series(1, 1000) AS n; "
                              f"CREATE VIEW s.sleepy AS SELECT 1 AS slept FROM pg_sleep(0.3); "
                              f"GRANT USAGE ON SCHEMA s TO {self.role}; "
                              f"GRANT SELECT ON ALL TABLES IN SCHEMA s TO {self.role}"))

    async def _sql(self, statement: str, query: str | None = None) -> Any:
        """`statement` (one or more, no result), then `query`'s rows."""
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await connection.execute(statement)
            return await connection.fetch(query) if query is not None else None
        finally:
            await connection.close()

    def rotate(self) -> tuple[str, float]:
        """A new password on the server; the old one stops working at once. Returns it and the server's time
        of the change."""
        self.password = f"pw-{uuid.uuid4().hex}"
        rows = asyncio.run(self._sql(f"ALTER ROLE {self.role} PASSWORD '{self.password}'",
                                     "SELECT extract(epoch FROM clock_timestamp())::float8"))
        return self.password, float(rows[0][0])

    def sessions_started(self) -> list[float]:
        rows = asyncio.run(self._sql("SELECT 1", f"SELECT extract(epoch FROM backend_start)::float8 FROM "
                                     f"pg_stat_activity WHERE usename = '{self.role}'"))
        return [float(r[0]) for r in rows]

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.role, database=self.database)

    def logs_in_with(self, password: str) -> bool:
        async def attempt() -> bool:
            try:
                connection = await asyncpg.connect(self.server.dsn(self.role, password, self.database))
            except asyncpg.InvalidPasswordError:
                return False
            await connection.close()
            return True

        return asyncio.run(attempt())


@pytest.fixture(scope="module")
def server() -> Iterator[PasswordPostgres]:
    created = PasswordPostgres()
    yield created
    created.stop()


class Load:
    """CLIENTS threads running queries through the gateway until stopped; every failure is kept."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.failures: list[str] = []
        self.done = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(CLIENTS)]
        for thread in self._threads:
            thread.start()

    def _run(self, k: int) -> None:
        cursor = trino.dbapi.connect(host=self.gateway.host, port=self.gateway.port, user="alice", catalog="pg",
                                     schema="s").cursor()
        statement, expected = ("SELECT * FROM sleepy", [[1]]) if k % 3 == 0 else \
            ("SELECT count(*) FROM numbers", [[1000]])
        while not self._stop.is_set():
            try:
                cursor.execute(statement)
                result = cursor.fetchall()
                problem = None if result == expected else f"wrong answer {result!r}"
            except Exception as error:  # every failure is the test's finding
                problem = f"{type(error).__name__}: {error}"
            with self._lock:
                self.done += 1
                if problem is not None:
                    self.failures.append(problem)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def rotation_under_load(server: PasswordPostgres, tmp_path: Path, password_source: Callable[[RotatingRole], Any],
                        publish: Callable[[str], None]) -> None:
    role = RotatingRole(server)
    source = password_source(role)
    config = {"backends": {"pg": {"type": "postgres", "dsn": role.dsn, "password": source, "pool_size": 4,
                                  "retries": {"attempts": 4, "backoff_seconds": 0.2}}},
              "policies": {"dir": str(policies(tmp_path / "policies"))}, "cache": {"enabled": False}}
    gateway = GatewayProcess(tmp_path, config)
    try:
        load = Load(gateway)
        try:
            time.sleep(LOAD_SECONDS)
            done_before = load.done
            old_password = role.password
            new_password, rotated_at = role.rotate()
            publish(new_password)
            time.sleep(LOAD_SECONDS * 2)
            assert load.done > done_before + CLIENTS, "the load stalled after the rotation"
        finally:
            load.stop()
        assert load.failures == []
        assert not role.logs_in_with(old_password) and role.logs_in_with(new_password)
        assert httpx.get(f"{gateway.url}/health/ready", timeout=10).status_code == 200  # the control connection
        # Drained: every session of the role now began after the rotation (idle old ones are replaced when next
        # used, so a few more rounds of queries reach each pooled connection).
        deadline = time.monotonic() + 20
        while min(role.sessions_started(), default=rotated_at + 1) <= rotated_at:
            assert time.monotonic() < deadline, "connections opened with the old password were never closed"
            again = Load(gateway)
            time.sleep(0.5)
            again.stop()
            assert again.failures == []
        assert gateway.metric("gateway_backend_connections_total", 'event="drained"') >= 1
        failed = gateway.metric("gateway_backend_connections_total", 'event="failed"')
        opened = gateway.metric("gateway_backend_connections_total", 'event="opened"')
        later = Load(gateway)
        time.sleep(LOAD_SECONDS)
        later.stop()
        assert later.failures == []
        # No login failed once the gateway knew the new password (a login with the old one would have).
        assert gateway.metric("gateway_backend_connections_total", 'event="failed"') == failed
        assert gateway.metric("gateway_backend_connections_total", 'event="opened"') >= opened
        assert old_password not in gateway.log() and new_password not in gateway.log()
    finally:
        gateway.stop()


def test_file_password_rotated_by_a_symlink_swap_under_load(server: PasswordPostgres, tmp_path: Path) -> None:
    mount = tmp_path / "secret-mount"
    generation = iter(range(1, 100))

    def source(role: RotatingRole) -> dict[str, Any]:
        link = kubernetes_secret(mount, role.password, next(generation))
        return {"file": str(link), "check_seconds": 0.2}

    rotation_under_load(server, tmp_path, source, lambda pw: kubernetes_secret(mount, pw, next(generation)) and None)


def test_command_password_rotated_under_load(server: PasswordPostgres, tmp_path: Path) -> None:
    store = tmp_path / "secret-manager" / "pg-password"
    store.parent.mkdir()

    def write(password: str) -> None:
        staged = store.with_suffix(".new")
        staged.write_text(password + "\n")
        os.replace(staged, store)  # the "secret manager" answers the old or the new one, never half of one

    def source(role: RotatingRole) -> dict[str, Any]:
        write(role.password)
        return {"command": ["cat", str(store)], "refresh_seconds": 0.5, "timeout_seconds": 5}

    rotation_under_load(server, tmp_path, source, write)
