"""The planner's world for in-process planning tests: the demo catalog, the shipped policies, a mask key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.duckdb import DuckDBBackend
from gateway.catalog import CatalogSnapshot
from gateway.mask_key import MaskKey
from gateway.metadata import build_metadata
from gateway.metrics import Metrics
from gateway.planner import Planner, PolicyContext
from gateway.policy.load import load_policies
from gateway.sql.limits import StatementLimits
from gateway.sql.rewrite import SecureViews

ROOT = Path(__file__).resolve().parent.parent
CATALOG = "demo"


@dataclass(frozen=True)
class World:
    snapshot: CatalogSnapshot
    policy: PolicyContext
    mask_key: MaskKey
    backend: DuckDBBackend

    def planner(self, limits: StatementLimits | None = None) -> Planner:
        return Planner(backends={CATALOG: self.backend}, default_catalog=CATALOG, version="test", metrics=Metrics(),
                       mask_key=self.mask_key, limits=limits)


def open_world(database: Path) -> Iterator[World]:
    """A module fixture's body: the world, then its backend and catalog engine closed."""
    backend = DuckDBBackend(name=CATALOG, path=database)

    async def tables() -> Any:
        await backend.start()
        return await backend.tables()

    loop = asyncio.new_event_loop()  # its own loop: asyncio.run would unset the thread's loop other tests use
    metadata = build_metadata({CATALOG: loop.run_until_complete(tables())}, workers=1, postgres_catalog=False)
    yield World(metadata.snapshot, PolicyContext(load_policies(ROOT / "policies"), SecureViews()),
                MaskKey.generate(), backend)
    metadata.engine.close()
    loop.run_until_complete(backend.close())
    loop.close()
