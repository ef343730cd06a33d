"""A gateway subprocess on a free loopback port, and the cached demo database it serves.

A trimmed copy of `GatewayProcess` in tests/conftest.py (load tests do not import from tests/).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import yaml

from gateway.demo import build_demo_database

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "data" / "bench"  # data/ is gitignored
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def demo_database(scale: float, schema: str = "tpch") -> Path:
    """The TPC-H demo database at `scale`, built on first use under data/bench/ and reused afterwards."""
    path = BENCH_DIR / f"tpch-sf{scale:g}" / "demo.duckdb"
    build_demo_database(path, schema=schema, scale=scale)
    return path


def demo_config(database: Path, schema: str = "tpch", **sections: Any) -> dict[str, Any]:
    """The demo backend with the repository's example policies and dev users."""
    return {"backends": {"demo": {"type": "duckdb", "path": str(database), "schema": schema}},
            "policies": {"dir": str(REPO / "policies")}, **sections}


class GatewayProcess:
    """`gateway serve` in a subprocess bound to 127.0.0.1, with its own config file and log in `workdir`."""

    def __init__(self, workdir: Path, config: dict[str, Any], ready_timeout: float = 60.0,
                 module: str = "gateway.cli") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        server = {**config.get("server", {}), "host": self.host, "port": self.port}
        self.config_path = workdir / f"gateway-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump({**config, "server": server}))
        self.log_path = workdir / f"gateway-{self.port}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ), cwd=REPO,
        )
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not become ready in {timeout:.0f}s:\n{self.log()}")

    def version(self) -> str:
        info = httpx.get(f"{self.url}/v1/info", timeout=5).json()
        return str(info["nodeVersion"]["version"])

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
