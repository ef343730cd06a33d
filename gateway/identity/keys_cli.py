"""`gateway keys create | rotate | revoke | list`: service-account API keys in the configured store.

The key is printed once, alone on standard output (so `KEY=$(gateway keys create ...)` works); everything
else goes to standard error. `list` never shows secrets or hashes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.identity.api_keys import ApiKeyError, ApiKeyRecord, ApiKeys, KeyStoreUnavailable, utcnow
from gateway.identity.model import attributes_from_pairs
from gateway.identity.setup import build_key_store

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> timedelta:
    """`90d`, `24h`, `30m`, `45s`, `2w` -> timedelta (for argparse `type=`)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90d, 24h, 30m)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="service-account API keys").add_subparsers(dest="keys_command",
                                                                                        required=True)
    create = keys.add_parser("create", help="issue a key for a new service account; prints it once")
    create.add_argument("--name", required=True, help="the service account (the user name it authenticates as)")
    create.add_argument("--groups", default="", help="comma-separated groups")
    create.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                        help="identity attribute; VALUE may be a comma-separated list (nations=1,2)")
    create.add_argument("--cost-center", default=None)
    create.add_argument("--expires", type=duration, default=None, help="lifetime, e.g. 90d (default: none)")
    rotate = keys.add_parser("rotate", help="issue a new key; the old one stays valid for the grace period")
    rotate.add_argument("name")
    rotate.add_argument("--grace", type=duration, default=timedelta(hours=24), help="default 24h")
    rotate.add_argument("--expires", type=duration, default=None, help="lifetime of the new key "
                                                                        "(default: the old key's)")
    revoke = keys.add_parser("revoke", help="revoke every key of a service account at once")
    revoke.add_argument("name")
    keys.add_parser("list", help="service accounts, key ids, state, expiry and last use (never secrets)")
    for parser in keys.choices.values():
        parser.add_argument("--config", type=Path, help="gateway.yaml (its identity.api_keys)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if settings.identity.api_keys is None:
        print(f"{settings.source}: identity.api_keys is not configured (set file or postgres)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(settings, args))
    except ApiKeyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyStoreUnavailable as error:
        print(f"error: API key store unavailable: {error}", file=sys.stderr)
        return 2


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    assert settings.identity.api_keys is not None
    store = build_key_store(settings.identity.api_keys)
    await store.start()
    try:
        keys = ApiKeys(store)
        if args.keys_command == "create":
            groups = [g.strip() for g in args.groups.split(",") if g.strip()]
            try:
                attributes = attributes_from_pairs(args.attr)
            except ValueError as error:
                raise SystemExit(f"--attr: {error}") from None
            record, key = await keys.create(args.name, groups=groups, attributes=attributes,
                                            cost_center=args.cost_center, expires_in=args.expires)
            _announce("created", record, key)
        elif args.keys_command == "rotate":
            record, key = await keys.rotate(args.name, grace=args.grace, expires_in=args.expires)
            _announce("rotated", record, key)
            print(f"previous keys of {record.name} stay valid until {_when(utcnow() + args.grace)} at the latest",
                  file=sys.stderr)
        elif args.keys_command == "revoke":
            count = await keys.revoke(args.name)
            print(f"revoked {count} key(s) of {args.name}", file=sys.stderr)
        else:
            _table(await keys.list())
        return 0
    finally:
        await store.close()


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def _announce(verb: str, record: ApiKeyRecord, key: str) -> None:
    print(f"{verb} API key {record.key_id} for {record.name} (groups: {', '.join(record.groups) or '-'}; "
          f"expires: {_when(record.expires_at) if record.expires_at else 'never'}). The key is shown only "
          f"now; use it as the password with user {record.name}:", file=sys.stderr)
    print(key, flush=True)


def _table(records: list[ApiKeyRecord]) -> None:
    now = utcnow()
    rows = [("NAME", "KEY ID", "STATE", "GROUPS", "CREATED", "EXPIRES", "LAST USED")]
    rows += [(r.name, r.key_id, r.state(now), ",".join(r.groups) or "-", _when(r.created_at), _when(r.expires_at),
              _when(r.last_used_at)) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
