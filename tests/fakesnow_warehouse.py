"""A Snowflake warehouse of the tests' own: fakesnow's server (DuckDB underneath) in its own environment
(.venv-fakesnow, tests/fakesnow/requirements.txt) on a free port, through tests/fakesnow/serve.py, which records
the statement parameters each query request carried. `load_tpch` copies the demo's TPC-H tables into it
with upper-case names, as Snowflake stores unquoted names."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import snowflake.connector

from gateway.demo import TPCH_TABLES
from gateway.testing import free_port, listens_on

ROOT = Path(__file__).resolve().parent.parent
FAKESNOW_PYTHON = ROOT / ".venv-fakesnow" / "bin" / "python"
SERVE = ROOT / "tests" / "fakesnow" / "serve.py"
START_ATTEMPTS = 3


class FakeSnow:
    """A fakesnow server on a free port, and the statement parameters it received."""

    def __init__(self, workdir: Path) -> None:
        self.database = f"GW_{uuid.uuid4().hex[:10].upper()}"
        for attempt in range(1, START_ATTEMPTS + 1):
            self._start(workdir)
            if self._ready():
                break
            taken = self.process.poll() is not None and "address already in use" in self._log_text()
            self.stop()
            if attempt == START_ATTEMPTS or not taken:  # only a port another process was handed too is retried
                raise RuntimeError("fakesnow did not start")
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {self.database}")

    def _start(self, workdir: Path) -> None:
        self.port = free_port()
        self.record = workdir / f"fakesnow-{self.port}.jsonl"
        self._log_path = workdir / f"fakesnow-{self.port}.log"
        self._log = open(self._log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([str(FAKESNOW_PYTHON), str(SERVE), str(self.port), str(self.record)],
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def _log_text(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace").lower()

    def _ready(self) -> bool:
        """Answering on its port, from its own socket (not another server handed the same port)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                self.connect().close()
                if listens_on(self.process.pid, self.port):
                    return True
            except snowflake.connector.errors.Error:
                pass
            time.sleep(0.2)
        return False

    def connect(self, **options: Any) -> Any:
        return snowflake.connector.connect(user="loader", password="x", account="gwtest", host="127.0.0.1",
                                           port=self.port, protocol="http", login_timeout=5, network_timeout=30,
                                           **options)

    def sql(self, *statements: str) -> list[list[tuple[Any, ...]]]:
        with self.connect(database=self.database) as connection, connection.cursor() as cursor:
            results = []
            for statement in statements:
                cursor.execute(statement)
                results.append([tuple(r) for r in cursor.fetchall()])
            return results

    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def snowflake_backend(fake: FakeSnow, **options: Any) -> dict[str, Any]:
    """A gateway backend's configuration for `fake` (its password from GW_TEST_SNOWFLAKE_PASSWORD)."""
    return {"type": "snowflake", "account": "gwtest", "user": "gateway", "database": fake.database,
            "password": {"env": "GW_TEST_SNOWFLAKE_PASSWORD"}, "host": "127.0.0.1", "port": fake.port,
            "protocol": "http", "warehouse": "GW_WH", "warehouse_size": "M", "pool_size": 4, **options}


def load_tpch(fake: FakeSnow, demo_database: Path, workdir: Path) -> None:
    """The demo's TPC-H tables into schema TPCH, every name upper case (as unquoted names are stored)."""
    demo = duckdb.connect(str(demo_database), read_only=True)
    statements = ["CREATE SCHEMA TPCH"]
    try:
        for table in TPCH_TABLES:
            parquet = workdir / f"{table}.parquet"
            demo.execute(f"COPY (SELECT * FROM tpch.{table}) TO '{parquet}' (FORMAT parquet)")
            columns = [r[0] for r in demo.execute(f"DESCRIBE tpch.{table}").fetchall()]
            select = ", ".join(f'{c} AS "{c.upper()}"' for c in columns)
            statements.append(f"CREATE TABLE TPCH.{table.upper()} AS SELECT {select} FROM read_parquet('{parquet}')")
    finally:
        demo.close()
    fake.sql(*statements)
