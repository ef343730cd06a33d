"""The cached demo database the load tests serve, and their gateway configuration; the gateway process
itself is `gateway.testing.GatewayProcess`, as in the test suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.demo import build_demo_database
from gateway.testing import GatewayProcess

__all__ = ["BENCH_DIR", "REPO", "GatewayProcess", "demo_config", "demo_database"]

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "data" / "bench"  # data/ is gitignored


def demo_database(scale: float, schema: str = "tpch") -> Path:
    """The TPC-H demo database at `scale`, built on first use under data/bench/ and reused afterwards."""
    path = BENCH_DIR / f"tpch-sf{scale:g}" / "demo.duckdb"
    build_demo_database(path, schema=schema, scale=scale)
    return path


def demo_config(database: Path, schema: str = "tpch", **sections: Any) -> dict[str, Any]:
    """The demo backend with the repository's example policies and dev users. The raw-HTTP scenarios send one
    POST per query and read its answer, so the first response carries the first page
    (`protocol.inline_first_page`); a scenario may pass its own `protocol` section."""
    return {"backends": {"demo": {"type": "duckdb", "path": str(database), "schema": schema}},
            "policies": {"dir": str(REPO / "policies")}, "protocol": {"inline_first_page": True}, **sections}

