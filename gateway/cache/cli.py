"""`gateway cache purge [--table catalog.schema.table]`: POST /api/cache/purge on a running gateway (with Redis,
every replica drops the entries)."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
import urllib.request
from typing import Any

from gateway.admin_client import add_connection_arguments, auth_headers, call, error_text


def add_parser(commands: Any) -> None:
    cache = commands.add_parser("cache", help="the result cache").add_subparsers(dest="cache_command", required=True)
    purge = cache.add_parser("purge", help="drop cached results: all, or those that read one table")
    purge.add_argument("--table", help="catalog.schema.table (default: everything)")
    add_connection_arguments(purge)


def run(args: argparse.Namespace) -> int:
    query = f"?{urllib.parse.urlencode({'table': args.table})}" if args.table else ""
    request = urllib.request.Request(f"{args.server.rstrip('/')}/api/cache/purge{query}", method="POST",
                                     headers=auth_headers(args), data=b"")
    status, body = call(request)
    if status != 200:
        print(f"purge failed ({status}): {error_text(body)}", file=sys.stderr)
        return 1
    print(f"purged {body['purged']} cached result(s)" + (f" that read {args.table}" if args.table else ""))
    return 0
