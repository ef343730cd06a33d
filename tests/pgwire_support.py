"""Starting a gateway with its PostgreSQL wire port open, for the tests/test_pgwire*.py files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayProcess


class PgGateway:
    """A gateway process and its pgwire port."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        server = {**config.get("server", {}), "pgwire_port": True, "shutdown_grace_seconds": 2}  # port: picked there
        self.process = GatewayProcess(workdir, {**config, "server": server})
        assert self.process.pgwire_port is not None
        self.pg_port = self.process.pgwire_port
        self.host = self.process.host

    def dsn(self, user: str = "alice", *, dbname: str = "demo", **options: str) -> str:
        parts = {"host": self.host, "port": str(self.pg_port), "user": user, "dbname": dbname,
                 "connect_timeout": "10", **options}
        quoted = {key: "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'" for key, value in parts.items()}
        return " ".join(f"{key}={value}" for key, value in quoted.items())

    def stop(self) -> None:
        self.process.stop()


def audited_gateway(demo_database: Path, tmp_path_factory: pytest.TempPathFactory,
                    name: str) -> Iterator[tuple[PgGateway, Path]]:
    """A module's gateway over the demo database with a SQLite audit store; (gateway, the store's file)."""
    from tests.test_audit_gateway import audit_config

    workdir = tmp_path_factory.mktemp(name)
    gateway = PgGateway(workdir, audit_config(demo_database, workdir))
    yield gateway, workdir / "audit.db"
    gateway.stop()
