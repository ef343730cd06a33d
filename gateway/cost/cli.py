"""`gateway chargeback`: cost totals from the ledger, straight against the configured audit store.

    gateway chargeback --from 2026-11-01 --to 2026-12-01 --by cost_center|owner|user|table
                       [--format table|csv|json] [--config FILE] [--store URL]

`--from` is inclusive, `--to` exclusive (dates are midnight UTC).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from gateway.audit.stores import AuditStore, StoreUnavailable, open_store
from gateway.config import Settings
from gateway.cost.report import DIMENSIONS, FORMATS, Report, ReportError, chargeback, parse_bound, render


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("chargeback", help="cost per cost center, owner, user or table from the ledger")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--store", help="audit store URL (default: audit.store from the config)")
    parser.add_argument("--from", dest="start", required=True, help="first day (2026-11-01) or ISO time, inclusive")
    parser.add_argument("--to", dest="end", required=True, help="day or ISO time, exclusive")
    parser.add_argument("--by", choices=DIMENSIONS, default="cost_center")
    parser.add_argument("--format", choices=FORMATS, default="table")


async def report_from(store: AuditStore, *, by: str, start: str, end: str) -> Report:
    """The report over the store's ledger (shared with /api/chargeback)."""
    charges = await store.charges(start, end)
    attributions = await store.attributions(start, end) if by in ("owner", "table") else []
    return chargeback(by=by, start=start, end=end, charges=charges, attributions=attributions)


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        start, end = parse_bound(args.start, "--from"), parse_bound(args.end, "--to")
    except ReportError as error:
        print(f"gateway chargeback: {error}", file=sys.stderr)
        return 2
    store = open_store(args.store or settings.audit.store)
    try:
        report = asyncio.run(_run(store, by=args.by, start=start, end=end))
    except (StoreUnavailable, ReportError) as error:
        print(f"gateway chargeback: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(render(report, args.format))
    return 0


async def _run(store: AuditStore, *, by: str, start: str, end: str) -> Report:
    await store.open()
    try:
        return await report_from(store, by=by, start=start, end=end)
    finally:
        await store.close()
