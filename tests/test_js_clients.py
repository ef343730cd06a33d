"""The JavaScript Trino clients, unmodified, against a real gateway: trino-client (the official one) and
presto-client (engine: 'trino'), as installed from tests/js/package-lock.json by `make test` (npm ci)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.testing import GatewayProcess

JS = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="module")
def seen(gateway: GatewayProcess) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is needed for the JavaScript client tests"
    assert (JS / "node_modules" / "trino-client").is_dir(), "run `npm ci --prefix tests/js` (make test does)"
    done = subprocess.run([node, str(JS / "clients.js"), gateway.url, "alice"], capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize("client", ["trino_client", "presto_client"])
def test_rows_of_small_and_paged_results(seen: dict[str, Any], client: str) -> None:
    assert seen[client]["small"]["data"] == [["ARGENTINA"]]  # a one-row result: in no first response
    assert seen[client]["small"]["columns"] == ["n_name"]
    assert seen[client]["big"] == {"rows": 60175, "error": None}  # no page lost, the first one included


def test_errors_reach_the_clients_in_trino_words(seen: dict[str, Any]) -> None:
    syntax = seen["trino_client"]["error"]["error"]
    assert syntax["name"] == "SYNTAX_ERROR" and syntax["message"].startswith("line 1:1: mismatched input 'SELEC'")
    unknown = seen["presto_client"]["error"]["error"]
    assert unknown == {"name": "COLUMN_NOT_FOUND", "message": "Column 'nope' cannot be resolved"}


@pytest.mark.parametrize("client", ["trino_client", "presto_client"])
def test_query_info_and_cancel(seen: dict[str, Any], client: str) -> None:
    info = seen[client]["info"]
    assert info["queryId"] == seen[client]["small"]["id"] and info["state"] == "FINISHED"
    assert info["query"] == "SELECT n_name FROM nation WHERE n_nationkey = 1"
    stopped = seen[client]["cancelled" if client == "trino_client" else "killed"]
    assert stopped["error"] == "USER_CANCELED"


def test_presto_client_lists_nodes(seen: dict[str, Any]) -> None:
    nodes = seen["presto_client"]["nodes"]
    assert len(nodes) == 1 and nodes[0]["coordinator"] is True
