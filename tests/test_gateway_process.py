"""The test harness's gateway subprocess (gateway.testing.GatewayProcess) is the one its tests talk to: a
port that another process holds (what happens when two pytest workers are handed the same free port) makes
it start again on another, never hand its test to the other process."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway import testing
from gateway.testing import HOST, GatewayProcess, listens_on
from tests.conftest import demo_config


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Answers like a ready gateway, and is not one."""

    def do_GET(self) -> None:
        body = b'{"nodeVersion": {"version": "impostor"}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def impostor() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer((HOST, 0), _Impostor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_held_by_another_process_is_not_taken_for_the_gateway(
        demo_database: Path, tmp_path: Path, impostor: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = testing.free_port
    handed = iter([impostor])
    monkeypatch.setattr(testing, "free_port", lambda: next(handed, None) or real_free_port())
    with GatewayProcess(tmp_path, demo_config(demo_database)) as gateway:
        assert gateway.port != impostor
        assert listens_on(gateway.process.pid, gateway.port)
        assert gateway.version() != "impostor"
        assert (tmp_path / f"gateway-{impostor}.log").read_text().lower().count("address already in use") >= 1


def test_listens_on_names_the_process_holding_the_socket(impostor: int) -> None:
    assert listens_on(os.getpid(), impostor)  # the impostor's server runs in this process
    assert not listens_on(os.getpid(), testing.free_port())
    with httpx.Client() as client:
        assert client.get(f"http://{HOST}:{impostor}/health/ready").status_code == 200


def test_a_pgwire_port_held_by_another_process_is_not_taken_either(
        demo_database: Path, tmp_path: Path, impostor: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = testing.free_port
    handed = iter([real_free_port(), impostor])  # the HTTP port is free, the pgwire port is held
    monkeypatch.setattr(testing, "free_port", lambda: next(handed, None) or real_free_port())
    config = demo_config(demo_database, server={"pgwire_port": True})
    with GatewayProcess(tmp_path, config) as gateway:
        assert gateway.pgwire_port is not None and gateway.pgwire_port != impostor
        assert listens_on(gateway.process.pid, gateway.pgwire_port)
