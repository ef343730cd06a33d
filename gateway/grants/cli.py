"""`gateway access`: just-in-time access requests on a running gateway, over its /api/access endpoints.

    gateway access request --table T --reason "..." --for 2h [--columns a,b]
    gateway access list [--status pending]
    gateway access approve ID [--comment "..."]
    gateway access deny ID [--comment "..."]
    gateway access revoke ID [--comment "..."]

Authenticates as the Trino endpoint does: `--user` (dev mode), `--token` (JWT) or `--api-key`.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from typing import Any

from gateway.admin_client import add_connection_arguments, auth_headers, call, error_text
from gateway.grants.model import seconds_text

_VERBS = ("approve", "deny", "revoke")


def add_parser(commands: Any) -> None:
    access = commands.add_parser("access", help="just-in-time access requests: request, list, approve, deny, "
                                                "revoke").add_subparsers(dest="access_command", required=True)
    request = access.add_parser("request", help="ask for time-bounded access to a table (or unmasked columns)")
    request.add_argument("--table", required=True, help="[catalog.]schema.table")
    request.add_argument("--reason", required=True, help="why (shown to the approvers, kept in the audit)")
    request.add_argument("--for", dest="duration", required=True, metavar="DURATION", help="2h, 30m, 90s, 1d")
    request.add_argument("--columns", default="", help="comma-separated masked columns to see unmasked")
    listing = access.add_parser("list", help="the requests you may see, newest first")
    listing.add_argument("--status", choices=("pending", "approved", "denied", "revoked", "expired"))
    for verb in _VERBS:
        decide = access.add_parser(verb, help=f"{verb} an access request")
        decide.add_argument("id")
        decide.add_argument("--comment", default="")
    for sub in (request, listing, *(access.choices[v] for v in _VERBS)):
        add_connection_arguments(sub)
        sub.add_argument("--json", action="store_true", help="print the API's JSON as is")


def run(args: argparse.Namespace) -> int:
    headers = {**auth_headers(args), "Content-Type": "application/json"}
    base = f"{args.server.rstrip('/')}/api/access/requests"
    command = args.access_command
    if command == "request":
        body = {"table": args.table, "reason": args.reason, "duration": args.duration,
                "columns": [c.strip() for c in args.columns.split(",") if c.strip()]}
        status, answer = call(urllib.request.Request(base, data=json.dumps(body).encode(), method="POST",
                                                     headers=headers))
    elif command == "list":
        query = f"?{urllib.parse.urlencode({'status': args.status})}" if args.status else ""
        status, answer = call(urllib.request.Request(base + query, headers=headers))
    else:
        url = f"{base}/{urllib.parse.quote(args.id, safe='')}/{command}"
        status, answer = call(urllib.request.Request(url, data=json.dumps({"comment": args.comment}).encode(),
                                                     method="POST", headers=headers))
    if status not in (200, 201):
        print(f"{command} failed ({status}): {error_text(answer)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    elif command == "list":
        print(render(answer.get("requests", [])))
    else:
        print(render([answer]))
    return 0


def render(requests: list[dict[str, Any]]) -> str:
    if not requests:
        return "no access requests"
    lines = [f"{'id':<16}  {'status':<8}  {'requester':<12}  {'table':<28}  {'for':>6}  {'expires':<20}  decided by"]
    for r in requests:
        columns = f" ({', '.join(r['columns'])})" if r.get("columns") else ""
        expires = (r.get("expires_at") or "")[:19]
        lines.append(f"{r['id']:<16}  {r['status']:<8}  {r['requester']:<12}  {r['table'] + columns:<28}  "
                     f"{seconds_text(r['duration_seconds']):>6}  {expires:<20}  {r.get('decided_by') or ''}")
    return "\n".join(lines)
