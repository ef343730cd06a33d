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


PGJDBC = Path("/usr/share/java/postgresql.jar")
PROBE = Path(__file__).parent / "pgjdbc" / "CatalogProbe.java"


def test_pgjdbc_database_metadata(gw: PgGateway, tmp_path: Path) -> None:
    if not PGJDBC.exists():
        pytest.fail(f"{PGJDBC} is missing: apt-get install libpostgresql-jdbc-java (.ci/run does)")
    subprocess.run(["javac", "-cp", str(PGJDBC), "-d", str(tmp_path), str(PROBE)], check=True, timeout=120)
    url = f"jdbc:postgresql://{gw.host}:{gw.pg_port}/demo?user=bob"
    done = subprocess.run(["java", "-cp", f"{PGJDBC}:{tmp_path}", "CatalogProbe", url], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "catalog=demo" in lines and "schema=tpch" in lines
    assert "table=tpch.nation|TABLE" in lines
    assert "column=n_nationkey|-5|int8" in lines  # java.sql.Types.BIGINT
    assert not any(line.startswith("pk=") for line in lines)
    assert any(line.startswith("types=") and int(line.split("=")[1]) > 20 for line in lines)
