"""Policy canaries: probes run as test identities through the real pipeline at start, before a reload is
installed, and on a schedule; a reload whose canaries fail is refused and the old rules keep being enforced."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trino
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.audit.search import Search
from gateway.cli import main
from gateway.config import load_settings
from gateway.policy.load import PolicyError
from gateway.policy_changes.canaries import parse_canaries
from gateway.policy_changes.canary_run import rows_violating
from gateway.relations import Column
from gateway.testing import GatewayProcess
from gateway.types import BIGINT, VARCHAR
from tests.conftest import POLICIES, demo_config

FAILING = {"canaries": {"users": {"canary-americas": {"groups": ["analysts"], "attributes": {"nations": [1]}}},
                        "probes": [{"name": "analysts are denied nation", "user": "canary-americas",
                                    "catalog": "demo", "schema": "tpch", "sql": "SELECT * FROM nation",
                                    "expect": "denied"}]}}


def copied_policies(target: Path, canaries: dict[str, Any] | None = None) -> Path:
    shutil.copytree(POLICIES, target)
    if canaries is not None:
        (target / "canaries.yaml").write_text(yaml.safe_dump(canaries))
    return target


def config_file(tmp_path: Path, database: Path, policies: Path, **policy_keys: Any) -> Path:
    path = tmp_path / "gateway.yaml"
    config = {**demo_config(database), "policies": {"dir": str(policies), **policy_keys},
              "audit": {"store": f"sqlite:///{tmp_path / 'audit.db'}", "spool_dir": str(tmp_path / "spool")}}
    path.write_text(yaml.safe_dump(config))
    return path


def test_failing_canary_blocks_the_reload_and_the_old_rules_stay(demo_database: Path, tmp_path: Path) -> None:
    policies = copied_policies(tmp_path / "policies")
    gateway = GatewayProcess(tmp_path, {**demo_config(demo_database),
                                        "policies": {"dir": str(policies), "reload_seconds": 0.2}})
    try:
        def nations(user: str) -> set[int]:
            cursor = trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo",
                                         schema="tpch").cursor()
            cursor.execute("SELECT DISTINCT c_nationkey FROM customer")
            return {row[0] for row in cursor.fetchall()}

        ready = httpx.get(f"{gateway.url}/health/ready", timeout=10).json()
        assert ready["canaries"]["total"] == 6 and ready["canaries"]["failed"] == {}
        assert gateway.metric("gateway_canary_runs_total", 'outcome="passed",trigger="start"') == 1
        assert nations("alice") == {1, 2, 3}
        # the proposed change drops the analysts' row filter: the nations canary fails, the reload is refused
        tables = yaml.safe_load((policies / "tables.yaml").read_text())
        next(e for e in tables["tables"] if e["name"] == "tpch.customer")["row_filters"][1]["filter"] = "true"
        (policies / "tables.yaml").write_text(yaml.safe_dump(tables))
        deadline = time.monotonic() + 30
        while gateway.metric("gateway_policy_reloads_total", 'outcome="invalid"') < 1:
            assert time.monotonic() < deadline, gateway.log()
            time.sleep(0.1)
        assert gateway.metric("gateway_canary_runs_total", 'outcome="failed",trigger="reload"') == 1
        assert gateway.metric("gateway_policy_reloads_total", 'outcome="loaded"') == 0
        assert nations("alice") == {1, 2, 3}  # the old rules, through the real trino client
        assert "analysts see only the customers of their nations" in gateway.log()
        ready = httpx.get(f"{gateway.url}/health/ready", timeout=10)
        assert ready.status_code == 200  # the version in force still passes its canaries
        assert "analysts see only the customers of their nations" in ready.json()["canaries"]["refused_reload"][
            "failed"]
        # a change the canaries accept is installed
        (policies / "tables.yaml").write_text((POLICIES / "tables.yaml").read_text() + "\n# reviewed\n")
        deadline = time.monotonic() + 30
        while gateway.metric("gateway_policy_reloads_total", 'outcome="loaded"') < 1:
            assert time.monotonic() < deadline, gateway.log()
            time.sleep(0.1)
        assert gateway.metric("gateway_canary_runs_total", 'outcome="passed",trigger="reload"') == 1
        assert nations("alice") == {1, 2, 3}
        assert nations("admin") == set(range(25))
    finally:
        gateway.stop()


async def served(gateway: Gateway, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """The gateway started in this process (canaries, schedule and all), its app called in process."""
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            await scenario(client)
    finally:
        await gateway.stop()


def test_failing_canary_at_start_keeps_the_gateway_unready(demo_database: Path, tmp_path: Path) -> None:
    policies = copied_policies(tmp_path / "policies", FAILING)
    gateway = Gateway(load_settings(config_file(tmp_path, demo_database, policies, canary_interval_seconds=0)))

    async def scenario(client: httpx.AsyncClient) -> None:
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["canaries"]["failed"] == {
            "analysts are denied nation": "expected denied, but it was allowed (25 rows)"}
        metrics = (await client.get("/metrics")).text
        assert "gateway_canary_failing 1.0" in metrics
        assert 'gateway_canary_passed{canary="analysts are denied nation"} 0.0' in metrics
        assert 'gateway_canary_runs_total{outcome="failed",trigger="start"} 1.0' in metrics

    asyncio.run(served(gateway, scenario))


def test_canaries_run_on_a_schedule_and_are_audited(demo_database: Path, tmp_path: Path) -> None:
    policies = copied_policies(tmp_path / "policies")
    gateway = Gateway(load_settings(config_file(tmp_path, demo_database, policies, canary_interval_seconds=0.3)))

    async def scenario(client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 30
        while 'gateway_canary_runs_total{outcome="passed",trigger="schedule"} 2.0' not in (
                await client.get("/metrics")).text:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert (await client.get("/health/ready")).status_code == 200
        rows = await gateway.audit.store.search(Search(user="canary-auditor"))
        while len(rows) < 3:  # start and two scheduled runs, once the trail has written them
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
            rows = await gateway.audit.store.search(Search(user="canary-auditor"))
        assert all(r["source"] == "canary" and r["frontend"] == "canary" and r["decision"] == "denied"
                   for _, r in rows)

    asyncio.run(served(gateway, scenario))


def test_cli_runs_the_canaries_once(demo_database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_file(tmp_path, demo_database, POLICIES)
    assert main(["policy", "canaries", "--config", str(config)]) == 0
    assert "ok    auditors cannot read customers: denied" in capsys.readouterr().out
    failing = copied_policies(tmp_path / "failing", FAILING)
    assert main(["policy", "canaries", "--config", str(config), "--policies", str(failing)]) == 1
    assert "FAIL  analysts are denied nation" in capsys.readouterr().out


def test_canary_file_mistakes_are_file_and_line() -> None:
    text = ("canaries:\n  users:\n    u: {groups: [a]}\n  probes:\n"
            "    - {name: x, user: nobody, sql: SELECT 1, expect: denied}\n"
            "    - {name: y, user: u, sql: SELECT 1, expect: maybe}\n"
            "    - {name: z, user: u, sql: SELECT 1, expect: {max_rows: -1, rows: 3}}\n")
    with pytest.raises(PolicyError) as error:
        parse_canaries("c.yaml", text)
    messages = "\n".join(error.value.errors)
    assert "c.yaml:5: user 'nobody' is not defined" in messages
    assert "c.yaml:6: expect must be denied, allowed" in messages
    assert "c.yaml:7:" in messages and "max_rows must be a whole number" in messages and "'rows'" in messages


@settings(max_examples=15)
@given(values=st.lists(st.one_of(st.none(), st.integers(-5, 30)), max_size=30),
       allowed=st.sets(st.integers(-5, 30), min_size=1, max_size=6))
def test_rows_where_counts_every_row_outside_the_predicate(values: list[int | None], allowed: set[int]) -> None:
    columns = (Column("k", BIGINT), Column("label", VARCHAR))
    rows = [(v, f"row {i}") for i, v in enumerate(values)]
    predicate = f"k IN ({', '.join(map(str, sorted(allowed)))})"
    assert rows_violating(predicate, columns, rows) == sum(1 for v in values if v is None or v not in allowed)
