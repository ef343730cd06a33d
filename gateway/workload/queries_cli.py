"""`gateway queries`: the running and queued queries per resource group of a gateway (GET /api/queries),
and `--kill ID` (DELETE /api/queries/ID). Authenticates as the Trino endpoint does: `--user` (dev mode,
X-Trino-User), `--token` (Bearer JWT) or `--api-key` (from the GATEWAY_API_KEY environment variable too)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def add_parser(commands: Any) -> None:
    queries = commands.add_parser("queries", help="running and queued queries per resource group; --kill one")
    queries.add_argument("--server", default="http://127.0.0.1:8080", help="gateway URL (default %(default)s)")
    queries.add_argument("--user", help="X-Trino-User (dev mode)")
    queries.add_argument("--token", help="Bearer token (JWT)")
    queries.add_argument("--api-key", default=os.environ.get("GATEWAY_API_KEY"), help="API key (Basic auth)")
    queries.add_argument("--kill", metavar="QUERY_ID", help="kill this query (ADMINISTRATIVELY_KILLED)")
    queries.add_argument("--message", help="with --kill: the message its user sees")
    queries.add_argument("--json", action="store_true", help="print the API's JSON as is")


def run(args: argparse.Namespace) -> int:
    headers = {"Accept": "application/json"}
    if args.user:
        headers["X-Trino-User"] = args.user
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    elif args.api_key:
        user = args.user or "api"
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{args.api_key}".encode()).decode()
    base = args.server.rstrip("/")
    if args.kill:
        query = f"?{urllib.parse.urlencode({'message': args.message})}" if args.message else ""
        url = f"{base}/api/queries/{urllib.parse.quote(args.kill, safe='')}{query}"
        status, body = _call(urllib.request.Request(url, method="DELETE", headers=headers))
        if status != 200:
            print(f"kill failed ({status}): {body.get('error', {}).get('message', body)}", file=sys.stderr)
            return 1
        print(f"killed {args.kill}")
        return 0
    status, body = _call(urllib.request.Request(f"{base}/api/queries", headers=headers))
    if status != 200:
        print(f"failed ({status}): {body.get('error', {}).get('message', body)}", file=sys.stderr)
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


def _call(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {"error": {"message": error.reason}}
    except (urllib.error.URLError, OSError) as error:
        return 0, {"error": {"message": f"cannot reach the gateway: {error}"}}
