"""`gateway policy impact --proposed DIR`: replay the audited statements of a period under proposed policy
files and report what would change; exit 3 when access would widen (so CI can gate the change).

Reads the configured audit store and the backend catalog the way `gateway policy check` does; plans only,
never executes. Audit records keep a statement's user, groups and source but not the identity's
attributes: a user listed in the dev users file (or a canary identity of canaries.yaml) replays with the
attributes given there, any other user with none (so a filter that binds an attribute denies them under both
policies alike).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.audit.search import Search, SearchError, parse_time
from gateway.audit.stores import StoreUnavailable, open_store
from gateway.config import Settings
from gateway.identity import Identity
from gateway.policy.load import PolicyError, load_policies
from gateway.policy_changes.canaries import load_canaries
from gateway.policy_changes.impact import Change, Replay, Statement

WIDENS_EXIT = 3
USAGE_EXIT = 2
_PAGE = 5000
_PERIOD = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def add_parser(policy: Any) -> None:
    impact = policy.add_parser("impact", help="replay audited statements under proposed policy files; exit 3 "
                                              "when access would widen")
    impact.add_argument("--proposed", type=Path, required=True, help="directory of the proposed policy files")
    impact.add_argument("--current", type=Path, help="the policy files to compare with (default: policies.dir)")
    impact.add_argument("--since", default="7d", help="period to replay: 7d, 24h, 30m, or an ISO 8601 time")
    impact.add_argument("--format", choices=("table", "csv", "json"), default="table")
    impact.add_argument("--config", type=Path)
    impact.add_argument("--store", help="audit store URL (default: audit.store from the config)")


def since_time(text: str, now: datetime) -> datetime:
    match = _PERIOD.fullmatch(text.strip())
    if match is not None:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    parsed = parse_time(text, "--since")
    assert parsed is not None
    return parsed


def run(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.app import build_dev_users
    from gateway.tools import offline_catalog, offline_planner

    try:
        since = since_time(args.since, datetime.now(UTC))
        current_dir = args.current or settings.policies.dir
        current = load_policies(current_dir)
        proposed = load_policies(args.proposed)
        canary_users = {c.identity.user: c.identity for c in load_canaries(current_dir).canaries}
        users = {**canary_users, **build_dev_users(settings)}
        records = asyncio.run(_records(args.store or settings.audit.store, since))
    except PolicyError as error:
        for message in error.errors:
            print(message, file=sys.stderr)
        print("gateway policy impact: the policy files above are invalid", file=sys.stderr)
        return USAGE_EXIT
    except (SearchError, StoreUnavailable) as error:
        print(f"gateway policy impact: {error}", file=sys.stderr)
        return USAGE_EXIT
    catalog = offline_catalog(settings)
    planner = offline_planner(settings, catalog)
    statements = [s for s in (statement_of(r, users) for r in records) if s is not None]
    changes = Replay(planner=planner, snapshot=catalog.snapshot, current=current, proposed=proposed).changes(
        statements)
    write_report(changes, args.format)
    widening = sum(1 for c in changes if c.widens)
    print(f"replayed {len(set(statements))} distinct statements of {len(records)} audit records since "
          f"{since:%Y-%m-%dT%H:%M:%SZ}: {len(changes)} change(s), {widening} widening access "
          f"(current {current.version[:12]}, proposed {proposed.version[:12]})", file=sys.stderr)
    return WIDENS_EXIT if widening else 0


async def _records(url: str, since: datetime) -> list[dict[str, Any]]:
    store = open_store(url)
    await store.open()
    try:
        records: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            page = await store.search(Search(since=since, limit=_PAGE, before_id=before))
            records.extend(fields for _, fields in page)
            if len(page) < _PAGE:
                return records
            before = page[-1][0]
    finally:
        await store.close()


def statement_of(record: dict[str, Any], users: dict[str, Identity]) -> Statement | None:
    """The replayable statement of an audit record, or None (no statement text, no user)."""
    user, sql = record.get("user_name"), record.get("sql")
    if not user or not sql or record.get("decision") == "rejected":
        return None
    known = users.get(user)
    identity = Identity.create(user, groups=list(record.get("user_groups") or []),
                               attributes=dict(known.attributes) if known is not None else {})
    return Statement(identity=identity, sql=sql, source=record.get("source"), catalog=record.get("catalog_name"),
                     schema=record.get("schema_name"), frontend=record.get("frontend") or "trino_http")


_COLUMNS = ("user", "table", "change", "widens", "detail", "sql")


def _row(change: Change) -> list[str]:
    return [change.user, change.table, change.kind, "yes" if change.widens else "no", change.detail,
            " ".join(change.sql.split())]


def write_report(changes: Sequence[Change], form: str) -> None:
    out = sys.stdout
    if form == "json":
        out.write(json.dumps([dict(zip(_COLUMNS, (c.user, c.table, c.kind, c.widens, c.detail, c.sql),
                                       strict=True)) for c in changes], indent=2) + "\n")
        return
    if form == "csv":
        writer = csv.writer(out)
        writer.writerow(_COLUMNS)
        writer.writerows(_row(c) for c in changes)
        return
    if not changes:
        out.write("no statement of the period changes decision, filter or mask\n")
        return
    rows = [list(_COLUMNS), *(_row(c) for c in changes)]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(_COLUMNS) - 1)]
    for row in rows:
        cells = [cell[:width].ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1][:200]]).rstrip() + "\n")
