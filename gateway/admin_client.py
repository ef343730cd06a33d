"""The HTTP client side of the admin CLI commands (`gateway queries`, `gateway cache purge`): they call a
running gateway's /api endpoints, authenticating as the Trino endpoint expects: `--user` (dev mode,
X-Trino-User), `--token` (Bearer JWT) or `--api-key` (Basic; also from GATEWAY_API_KEY)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import urllib.error
import urllib.request
from typing import Any


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default="http://127.0.0.1:8080", help="gateway URL (default %(default)s)")
    parser.add_argument("--user", help="X-Trino-User (dev mode)")
    parser.add_argument("--token", help="Bearer token (JWT)")
    parser.add_argument("--api-key", default=os.environ.get("GATEWAY_API_KEY"), help="API key (Basic auth)")


def auth_headers(args: argparse.Namespace) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if args.user:
        headers["X-Trino-User"] = args.user
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    elif args.api_key:
        user = args.user or "api"
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{args.api_key}".encode()).decode()
    return headers


def call(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body); status 0 when the gateway cannot be reached."""
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


def error_text(body: dict[str, Any]) -> str:
    return str(body.get("error", {}).get("message", body))
