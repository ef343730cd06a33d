"""Python clients other than trino-python-client, unmodified, against a real gateway: aiotrino (asyncio) and
dbt-trino (`dbt debug`, `dbt show`, `dbt docs generate` on the minimal project in tests/clients/dbt, run from
the separate environment .venv-clients that `make test` builds)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiotrino
import pytest

from gateway.testing import GatewayProcess

ROOT = Path(__file__).resolve().parent.parent
DBT = ROOT / ".venv-clients" / "bin" / "dbt"
PROJECT = Path(__file__).resolve().parent / "clients" / "dbt"


async def _aiotrino(gateway: GatewayProcess, sql: str, user: str = "alice") -> list[list[Any]]:
    connection = aiotrino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo",
                                        schema="tpch", source="aiotrino")
    try:
        cursor = await connection.cursor()
        await cursor.execute(sql)
        return [list(row) for row in await cursor.fetchall()]
    finally:
        await connection.close()


def test_aiotrino_reads_small_and_paged_results(gateway: GatewayProcess) -> None:
    assert asyncio.run(_aiotrino(gateway, "SELECT n_name FROM nation WHERE n_nationkey = 1")) == [["ARGENTINA"]]
    assert len(asyncio.run(_aiotrino(gateway, "SELECT l_orderkey FROM lineitem"))) == 60175
    # row filters apply to this client as to any: alice sees her three nations' customers only
    nations = asyncio.run(_aiotrino(gateway, "SELECT DISTINCT c_nationkey FROM customer ORDER BY 1"))
    assert nations == [[1], [2], [3]]


def test_aiotrino_gets_trino_errors(gateway: GatewayProcess) -> None:
    with pytest.raises(aiotrino.exceptions.TrinoUserError) as failed:
        asyncio.run(_aiotrino(gateway, "SELECT nope FROM nation"))
    assert failed.value.error_name == "COLUMN_NOT_FOUND"
    assert failed.value.message == "Column 'nope' cannot be resolved"


@pytest.fixture(scope="module")
def dbt(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Any:
    assert DBT.exists(), "dbt-trino is installed by `make test` into .venv-clients (tests/clients/requirements.txt)"
    project = tmp_path_factory.mktemp("dbt") / "project"
    shutil.copytree(PROJECT, project)
    env = {**os.environ, "GATEWAY_PORT": str(gateway.port), "DBT_PROFILES_DIR": str(project),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1", "DBT_USE_COLORS": "false"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(DBT), *args, "--project-dir", str(project)], capture_output=True, text=True,
                              env=env, cwd=project, timeout=240, check=False)

    run.project = project  # type: ignore[attr-defined]
    return run


def test_dbt_debug_connects(dbt: Any) -> None:
    done = dbt("debug")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Connection test: [OK connection ok]" in done.stdout and "All checks passed!" in done.stdout


def test_dbt_show_runs_a_model_through_the_policies(dbt: Any) -> None:
    done = dbt("show", "--select", "americas_customers", "--output", "json", "--log-format", "json")
    assert done.returncode == 0, done.stdout[-3000:]
    preview = next(json.loads(line)["data"]["preview"] for line in done.stdout.splitlines()
                   if line.startswith("{") and "preview" in json.loads(line).get("data", {}))
    rows = json.loads(preview) if isinstance(preview, str) else preview
    assert sorted(row["c_nationkey"] for row in rows) == [1, 2, 3]  # alice's row filter


def test_dbt_docs_generate_reads_the_catalog(dbt: Any) -> None:
    done = dbt("docs", "generate")
    assert done.returncode == 0, done.stdout[-3000:]
    catalog = json.loads((dbt.project / "target" / "catalog.json").read_text())
    nation = catalog["sources"]["source.gateway_demo.tpch.nation"]
    assert [c for c in nation["columns"]] == ["n_nationkey", "n_name", "n_regionkey", "n_comment"]
