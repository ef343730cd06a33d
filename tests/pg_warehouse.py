"""A PostgreSQL warehouse of the tests' own on the real server at 127.0.0.1:5432: its own database
(`gw_tpch_<random>`) holding the demo's TPC-H tables (copied from the DuckDB file), and a read-only role
`gw_reader_<random>` with SELECT on them and nothing else, as the README tells operators to set up.
`drop()` removes both."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import duckdb

from gateway.demo import TPCH_TABLES

SERVER = "postgresql://postgres@127.0.0.1:5432"
_PG_TYPES = {"BIGINT": "bigint", "INTEGER": "integer", "VARCHAR": "varchar", "DATE": "date", "DOUBLE": "float8"}


def psql(sql: str, database: str = "postgres", user: str = "postgres") -> str:
    """`sql` run by psql against the local server; its output, unaligned."""
    done = subprocess.run(["psql", "-h", "127.0.0.1", "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1",
                           "-Atc", sql], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return done.stdout.strip()


def available() -> bool:
    try:
        psql("SELECT 1")
        return True
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return False


def _pg_type(duck_type: str) -> str:
    if duck_type.startswith("DECIMAL"):
        return duck_type.replace("DECIMAL", "numeric")
    return _PG_TYPES[duck_type]


class PgWarehouse:
    def __init__(self, demo_database: Path) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.database = f"gw_tpch_{suffix}"
        self.reader = f"gw_reader_{suffix}"
        psql(f"CREATE DATABASE {self.database}")
        psql(f"CREATE ROLE {self.reader} LOGIN")
        try:
            asyncio.run(self._load(demo_database))
            psql(f"GRANT CONNECT ON DATABASE {self.database} TO {self.reader}")
            psql(f"GRANT USAGE ON SCHEMA tpch TO {self.reader}; "
                 f"GRANT SELECT ON ALL TABLES IN SCHEMA tpch TO {self.reader}", self.database)
        except BaseException:
            self.drop()
            raise

    @property
    def admin_dsn(self) -> str:
        return f"{SERVER}/{self.database}"

    @property
    def dsn(self) -> str:
        """What the gateway connects as: the read-only role."""
        return f"postgresql://{self.reader}@127.0.0.1:5432/{self.database}"

    def sql(self, statement: str) -> str:
        """Run `statement` as the owner (setting up the test's own tables and views)."""
        return psql(statement, self.database)

    def grant_all(self, schema: str) -> None:
        self.sql(f"GRANT USAGE ON SCHEMA {schema} TO {self.reader}; "
                 f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {self.reader}")

    async def _load(self, demo_database: Path) -> None:
        source = duckdb.connect(str(demo_database), read_only=True)
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await connection.execute("CREATE SCHEMA tpch")
            for table in TPCH_TABLES:
                columns = source.execute("SELECT column_name, data_type FROM information_schema.columns WHERE "
                                         "table_schema = 'tpch' AND table_name = ? ORDER BY ordinal_position",
                                         [table]).fetchall()
                ddl = ", ".join(f"{name} {_pg_type(kind)} NOT NULL" for name, kind in columns)
                await connection.execute(f"CREATE TABLE tpch.{table} ({ddl})")
                rows: list[tuple[Any, ...]] = source.execute(f"SELECT * FROM tpch.{table}").fetchall()
                await connection.copy_records_to_table(table, schema_name="tpch", records=rows)
            await connection.execute("ANALYZE")
        finally:
            await connection.close()
            source.close()

    def drop(self) -> None:
        psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        psql(f"DROP ROLE IF EXISTS {self.reader}")
