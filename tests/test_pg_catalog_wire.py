"""The emulated catalog through the real PostgreSQL wire frontend and real clients: psql's describe commands
and psycopg's type lookup, for an analyst (audrey, an auditor, reads no demo table but the public samples)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.types import TypeInfo

from tests.pgwire_support import PgGateway
from tests.test_audit_gateway import audit_config


@pytest.fixture(scope="module")
def gw(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgGateway]:
    workdir = tmp_path_factory.mktemp("pgcatalog-wire")
    gateway = PgGateway(workdir, audit_config(demo_database, workdir))
    yield gateway
    gateway.stop()


def psql(gw: PgGateway, command: str, user: str) -> str:
    done = subprocess.run(["psql", gw.dsn(user), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", command],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_psql_describe_commands_list_what_the_caller_may_read(gw: PgGateway) -> None:
    tables = psql(gw, r"\dt *.*", "bob")
    assert "tpch|nation|table|bob" in tables
    assert "tpch|nation" not in psql(gw, r"\dt *.*", "audrey")
    assert "n_nationkey|bigint" in psql(gw, r"\d tpch.nation", "bob").replace(" ", "")
    assert "tpch" in psql(gw, r"\dn", "bob")
    assert "demo" in psql(gw, r"\l", "bob")


def test_psycopg_type_lookup(gw: PgGateway) -> None:
    with psycopg.connect(gw.dsn("bob")) as connection:
        info = TypeInfo.fetch(connection, "text")
        assert info is not None and (info.oid, info.array_oid) == (25, 1009)
