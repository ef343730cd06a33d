"""`gateway queries`: the running and queued queries per resource group of a gateway (GET /api/queries),
and `--kill ID` (DELETE /api/queries/ID). Authenticates as the Trino endpoint does: `--user` (dev mode,
X-Trino-User), `--token` (Bearer JWT) or `--api-key` (from the GATEWAY_API_KEY environment variable too)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway.admin_client import add_connection_arguments, auth_headers, call, error_text


def add_parser(commands: Any) -> None:
    queries = commands.add_parser("queries", help="running and queued queries per resource group; --kill one")
    add_connection_arguments(queries)
    queries.add_argument("--kill", metavar="QUERY_ID", help="kill this query (ADMINISTRATIVELY_KILLED)")
    queries.add_argument("--message", help="with --kill: the message its user sees")
    queries.add_argument("--json", action="store_true", help="print the API's JSON as is")


def run(args: argparse.Namespace) -> int:
    headers = auth_headers(args)
    base = args.server.rstrip("/")
    if args.kill:
        query = f"?{urllib.parse.urlencode({'message': args.message})}" if args.message else ""
        url = f"{base}/api/queries/{urllib.parse.quote(args.kill, safe='')}{query}"
        status, body = call(urllib.request.Request(url, method="DELETE", headers=headers))
        if status != 200:
            print(f"kill failed ({status}): {error_text(body)}", file=sys.stderr)
            return 1
        print(f"killed {args.kill}")
        return 0
    status, body = call(urllib.request.Request(f"{base}/api/queries", headers=headers))
    if status != 200:
        print(f"failed ({status}): {error_text(body)}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else render(body))
    return 0


def render(body: dict[str, Any]) -> str:
    capacity = body.get("capacity")
    lines = [f"resource groups ({body['scope']}; capacity {capacity if capacity is not None else 'unlimited'}; "
             f"policy {body['policy_version']})",
             f"  {'group':<20} {'priority':>8} {'running':>12} {'queued':>12}"]
    for group in body["groups"]:
        running = f"{group['running']}/{group.get('max_concurrency', '?')}"
        queued = f"{group['queued']}/{group.get('max_queued', '?')}"
        lines.append(f"  {group['name']:<20} {group.get('priority', ''):>8} {running:>12} {queued:>12}")
    lines.append("")
    if not body["queries"]:
        lines.append("no queries running or queued" + ("" if body["scope"] == "cluster" else " on this replica"))
    else:
        lines.append(f"  {'query id':<32} {'state':<8} {'group':<16} {'user':<16} {'queued ms':>9} {'running ms':>10}")
        for query in body["queries"]:
            lines.append(f"  {query['query_id']:<32} {query['state']:<8} {query['group']:<16} {query['user']:<16} "
                         f"{query.get('queued_ms', ''):>9} {query.get('running_ms', ''):>10}"
                         + (f"  (replica {query['replica']})" if query.get("replica") else ""))
    return "\n".join(lines)
