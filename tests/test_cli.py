"""`gateway policy check` and `gateway explain`, run as the commands admins run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import POLICIES, demo_config


def gateway_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=120)


def config_file(tmp_path: Path, database: Path, policies: Path = POLICIES) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({**demo_config(database), "policies": {"dir": str(policies)}}))
    return path


def test_shipped_policies_pass_the_check(tmp_path: Path, demo_database: Path) -> None:
    result = gateway_cli("policy", "check", "--config", str(config_file(tmp_path, demo_database)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stderr


def test_check_reports_file_and_line(tmp_path: Path, demo_database: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    supplier = ("tables:\n"
                "  - name: tpch.supplier\n"
                "    access: [{when: {groups: [analysts]}}]\n"
                "    row_filters:\n"
                "      - filter: \"s_nation_key IN (:nations)\"\n"
                "    columns:\n"
                "      s_fax: {mask: redact}\n")
    (policies / "extra.yaml").write_text(supplier + "      s_phone: {mask: no_such_mask}\n")
    result = gateway_cli("policy", "check", "--config", str(config_file(tmp_path, demo_database, policies)))
    assert result.returncode == 1
    assert f"{policies / 'extra.yaml'}:8:" in result.stdout and "no_such_mask" in result.stdout
    (policies / "extra.yaml").write_text(supplier)  # the mask name fixed: now the catalog checks run
    result = gateway_cli("policy", "check", "--config", str(config_file(tmp_path, demo_database, policies)))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{policies / 'extra.yaml'}:7: error: column s_fax does not exist") for line in lines)
    assert any(line.startswith(f"{policies / 'extra.yaml'}:5: error:") and "s_nation_key" in line for line in lines)


def test_explain_shows_decision_rules_and_sql(tmp_path: Path, demo_database: Path) -> None:
    config = str(config_file(tmp_path, demo_database))
    result = gateway_cli("explain", "--config", config, "--user", "alice", "--sql",
                         "SELECT c_name, c_phone FROM customer WHERE c_nationkey = 2")
    assert result.returncode == 0, result.stderr
    assert "decision: ALLOW" in result.stdout
    assert "rule: row_filter demo.tpch.customer #2" in result.stdout
    assert "rule: mask demo.tpch.customer.c_phone:last4" in result.stdout
    assert "c_nationkey IN (1, 2, 3)" in result.stdout
    custom = gateway_cli("explain", "--config", config, "--user", "eve", "--groups", "analysts", "--attr",
                         "nations=9", "--sql", "SELECT count(*) FROM customer")
    assert "c_nationkey IN (9)" in custom.stdout
    denied = gateway_cli("explain", "--config", config, "--user", "audrey", "--sql", "SELECT * FROM orders")
    assert denied.returncode == 3
    assert "decision: DENY (PERMISSION_DENIED)" in denied.stdout
    assert "Cannot select from table demo.tpch.orders" in denied.stdout


def test_explain_with_an_unreadable_backend_says_so(tmp_path: Path) -> None:
    """A backend whose database is missing: a plain answer naming the catalog, never a traceback."""
    config = str(config_file(tmp_path, tmp_path / "missing.duckdb"))
    result = gateway_cli("explain", "--config", config, "--user", "admin", "--sql", "SELECT 1")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Catalog 'demo' is not available" in result.stdout
    assert "Traceback" not in result.stderr and "backend 'demo' is not reachable" in result.stderr


def test_check_warns_of_unkeyed_digest_masks_and_explain_hides_the_key(tmp_path: Path, demo_database: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    (policies / "extra.yaml").write_text("tables:\n"
                                         "  - name: tpch.supplier\n"
                                         "    access: [{when: {groups: [analysts]}}]\n"
                                         "    columns:\n"
                                         "      s_phone: {mask: {sql: \"substr(md5({column}), 1, 8)\"}}\n")
    config = str(config_file(tmp_path, demo_database, policies))
    result = gateway_cli("policy", "check", "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(line.startswith(f"{policies / 'extra.yaml'}:5: warning:") and "unkeyed digest" in line
               for line in result.stdout.splitlines())
    result = gateway_cli("explain", "--config", config, "--user", "alice", "--sql", "SELECT c_name FROM customer")
    assert result.returncode == 0, result.stderr
    assert "<mask key v1>" in result.stdout and "gwmaskkey" not in result.stdout
    assert (tmp_path / "data" / "mask.key").read_text().strip() not in result.stdout
