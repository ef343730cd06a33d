"""`gateway audit ...`: search, tail, export, verify and purge, straight against the configured store.

These run with the rights of the store URL they are given (`--store`, default `audit.store`); `purge` uses
`audit.admin_store` for PostgreSQL, because the gateway's own role may not delete.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from gateway.audit.quarantine import kept_in
from gateway.audit.record import DECISIONS, FIELD_NAMES, format_time
from gateway.audit.search import Search, SearchError, parse_time
from gateway.audit.stores import AuditStore, StoreUnavailable, open_store
from gateway.audit.verify import Verifier
from gateway.config import Settings


def add_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="search, export and verify the audit trail")
    sub = audit.add_subparsers(dest="audit_command", required=True)

    def common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--config", type=Path)
        parser.add_argument("--store", help="audit store URL (default: audit.store from the config)")
        return parser

    def filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--user")
        parser.add_argument("--table", help="catalog.schema.table, or its last parts")
        parser.add_argument("--decision", choices=DECISIONS)
        parser.add_argument("--since", help="ISO 8601 time (UTC unless an offset is given)")
        parser.add_argument("--until", help="ISO 8601 time")

    search = common(sub.add_parser("search", help="records matching filters, newest first"))
    filters(search)
    search.add_argument("--limit", type=int, default=50)
    search.add_argument("--format", choices=("table", "jsonl"), default="table")
    tail = common(sub.add_parser("tail", help="the latest records; --follow keeps printing new ones"))
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("--follow", "-f", action="store_true")
    tail.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    tail.add_argument("--max-polls", type=int, default=None, help=argparse.SUPPRESS)
    export = common(sub.add_parser("export", help="every record, in storage order"))
    export.add_argument("--format", choices=("csv", "jsonl"), required=True)
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    common(sub.add_parser("verify", help="check every chain; exit 1 naming each tampered record"))
    purge = common(sub.add_parser("purge", help="retention job: delete records older than N days (admin rights)"))
    purge.add_argument("--older-than-days", type=int, help="default: audit.retention_days")


def run(settings: Settings, args: argparse.Namespace) -> int:
    url = args.store or settings.audit.store
    admin = settings.audit.admin_store if args.store is None else None
    store = open_store(url, admin_url=admin)
    try:
        return asyncio.run(_run(store, settings, args))
    except (StoreUnavailable, SearchError) as error:
        print(f"gateway audit: {error}", file=sys.stderr)
        return 2


async def _run(store: AuditStore, settings: Settings, args: argparse.Namespace) -> int:
    await store.open()
    try:
        command = args.audit_command
        if command == "search":
            search = Search(user=args.user, table=args.table, decision=args.decision,
                            since=parse_time(args.since, "--since"), until=parse_time(args.until, "--until"),
                            limit=args.limit)
            rows = await store.search(search)
            _print(rows, args.format, sys.stdout)
            return 0
        if command == "tail":
            return await _tail(store, args)
        if command == "export":
            return await _export(store, args)
        if command == "verify":
            return await _verify(store, settings.audit.spool_dir / "quarantine")
        if command == "purge":
            days = args.older_than_days or settings.audit.retention_days
            if days is None:
                print("gateway audit purge: give --older-than-days or set audit.retention_days", file=sys.stderr)
                return 2
            before = format_time(datetime.now(UTC) - timedelta(days=days))
            deleted = await store.purge(before)
            print(f"purged {deleted} records received before {before}")
            return 0
        return 2
    finally:
        await store.close()


async def _tail(store: AuditStore, args: argparse.Namespace) -> int:
    rows = await store.search(Search(limit=max(1, args.lines)))
    rows.reverse()
    _print(rows, "table", sys.stdout)
    last = rows[-1][0] if rows else 0
    polls = 0
    while args.follow and (args.max_polls is None or polls < args.max_polls):
        polls += 1
        await asyncio.sleep(args.interval)
        fresh = [r for r in await store.search(Search(limit=1000)) if r[0] > last]
        fresh.reverse()
        if fresh:
            _print(fresh, "table", sys.stdout, header=False)
            last = fresh[-1][0]
    return 0


async def _export(store: AuditStore, args: argparse.Namespace) -> int:
    handle: TextIO = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(handle) if args.format == "csv" else None
        if writer is not None:
            writer.writerow(FIELD_NAMES)
        count = 0
        async for batch in store.scan():
            for _, fields in batch:
                count += 1
                if writer is not None:
                    writer.writerow([_cell(fields[name]) for name in FIELD_NAMES])
                else:
                    handle.write(json.dumps(fields, ensure_ascii=False, separators=(",", ":")) + "\n")
    finally:
        if args.output:
            handle.close()
    print(f"exported {count} records", file=sys.stderr)
    return 0


async def _verify(store: AuditStore, quarantine: Path) -> int:
    verifier = Verifier()
    async for batch in store.scan():
        verifier.add(batch)
    report = verifier.finish(await store.checkpoints(), await store.purges())
    for problem in report.problems:
        print(problem)
    for stream in report.unanchored:
        print(f"note: stream {stream} has no checkpoint yet (a truncated tail would go unnoticed)")
    kept = kept_in(quarantine)
    if kept:
        where = ", ".join(f"{stream} sequence {sequence}" for stream, sequence in kept[:20])
        print(f"note: {len(kept)} records the store refused are quarantined in {quarantine} (not in the store; "
              f"a gap there is expected): {where}{' ...' if len(kept) > 20 else ''}")
    state = "OK" if report.ok else f"{len(report.problems)} PROBLEM(S)"
    print(f"verified {report.records} records in {report.streams} streams: {state}")
    return 0 if report.ok else 1


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "" if value is None else value


_SHOWN = ("sequence_number", "received_at", "user_name", "decision", "error_name", "statement_type", "tables_read")


def _print(rows: Iterable[tuple[int, dict[str, Any]]], form: str, out: TextIO, *, header: bool = True) -> None:
    if form == "jsonl":
        for row_id, fields in rows:
            out.write(json.dumps({"id": row_id, **fields}, ensure_ascii=False) + "\n")
        return
    if header:
        out.write("\t".join(("id", *_SHOWN)) + "\n")
    for row_id, fields in rows:
        out.write("\t".join(str(_cell(v)) for v in (row_id, *(fields[k] for k in _SHOWN))) + "\n")

