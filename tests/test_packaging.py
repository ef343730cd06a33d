"""The package on its own: `gateway serve` with no configuration from a directory that is not the repository
(the shipped example policies, announced), `gateway init`, and runtime dependencies declared in the package."""

from __future__ import annotations

import importlib.metadata
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trino

from gateway.examples import EXAMPLE_POLICIES
from gateway.testing import HOST, free_port


def test_runtime_dependencies_are_declared_by_the_package() -> None:
    required = {re.split(r"[\[=<>; ]", r)[0].lower() for r in importlib.metadata.requires("query-gateway") or []
                if "extra ==" not in r}
    assert {"pytz", "tzdata", "duckdb", "sqlglot", "starlette", "uvicorn"} <= required


def test_serve_without_config_anywhere_uses_the_shipped_policies(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--host", HOST, "--port",
                                    str(port)], cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://{HOST}:{port}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        cursor = trino.dbapi.connect(host=HOST, port=port, user="alice", catalog="demo", schema="tpch").cursor()
        cursor.execute("SELECT DISTINCT c_nationkey FROM customer ORDER BY 1")
        assert cursor.fetchall() == [[1], [2], [3]]  # alice's row filter: the shipped tables.yaml and dev users
        cursor.execute("SELECT count(*) FROM system.runtime.queries")
        assert cursor.fetchall()[0][0] >= 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    text = log.read_text()
    assert f"policies  : {EXAMPLE_POLICIES} (the examples shipped with the gateway" in text
    assert (tmp_path / "data" / "demo.duckdb").exists()


def test_init_writes_an_editable_copy_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "init", str(target)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (target / "policies").iterdir()) == sorted(
        p.name for p in EXAMPLE_POLICIES.iterdir() if p.suffix == ".yaml")
    check = subprocess.run([sys.executable, "-m", "gateway.cli", "config", "--config", str(target / "gateway.yaml")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr
    again = subprocess.run([sys.executable, "-m", "gateway.cli", "init", str(target)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
