"""`backends.<name>` keys of a `type: trino` backend: a frozen dataclass and its parsing, called from
gateway/backends/settings.py in one line.

    backends:
      warehouse:
        type: trino
        url: https://trino.example.com:8443   # the coordinator
        user: gateway                          # the service user (the authenticated principal)
        catalog: hive                          # the remote catalog this gateway catalog maps to
        schema: default                        # session schema (generated SQL is fully qualified anyway)
        password_env: TRINO_PASSWORD           # Basic auth with `user`; or token_env: bearer token
        forward_identity: true                 # the gateway user as the session user (X-Trino-User)
        pool_size: 8                           # queries running at once on this backend
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config_reader import Reader

TRINO_KEYS = frozenset({"url", "user", "catalog", "password_env", "token_env", "allow_insecure_auth",
                        "forward_identity", "request_timeout_seconds", "source"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REMOTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class TrinoSettings:
    url: str
    user: str = "gateway"
    catalog: str = "system"
    password_env: str | None = None  # the name of the variable, never its value
    token_env: str | None = None
    allow_insecure_auth: bool = False  # credentials over plain http (a test rig, never production)
    forward_identity: bool = False
    request_timeout_seconds: float = 60.0  # one HTTP request (the server long-polls about 1 s)
    source: str = "query-gateway"  # X-Trino-Source when the client sent none


def read_secret(variable: str | None) -> str | None:
    """The one place a Trino backend's secret is read (to be swapped for the credentials provider)."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    return value if value else None


def _url(value: Any) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// URL, not {value[:80]!r}"
    if parts.username or parts.password or parts.query:
        return "must not carry credentials or a query (use password_env or token_env)"
    return None


def _env_name(value: Any) -> str | None:
    return None if _ENV_NAME.match(value) else f"must be an environment variable name, not {value[:40]!r}"


def _remote_name(value: Any) -> str | None:
    return None if _REMOTE_NAME.match(value) else f"must be a plain catalog name, not {value[:40]!r}"


def _non_empty(value: Any) -> str | None:
    return None if value.strip() else "must not be empty"


def trino_settings(r: Reader, s: Mapping[str, Any], p: tuple[str, ...], kind: str) -> TrinoSettings | None:
    """The Trino keys of backend section `s` (at path `p`) of type `kind`; None for other types (which must
    not set them) and, after reporting why, when they cannot work."""
    if kind != "trino":
        return None  # another engine's keys are refused by backends/settings.py
    url = r.get(s, (*p, "url"), str, None, _url)
    if url is None:
        if "url" not in s:
            r.fail((*p, "url"), "is required for a trino backend")
        return None
    d = TrinoSettings(url=url)
    settings = TrinoSettings(
        url=url.rstrip("/"),
        user=r.get(s, (*p, "user"), str, d.user, _non_empty),
        catalog=r.get(s, (*p, "catalog"), str, d.catalog, _remote_name),
        password_env=r.get(s, (*p, "password_env"), str, None, _env_name),
        token_env=r.get(s, (*p, "token_env"), str, None, _env_name),
        allow_insecure_auth=r.get(s, (*p, "allow_insecure_auth"), bool, False),
        forward_identity=r.get(s, (*p, "forward_identity"), bool, False),
        request_timeout_seconds=r.get(s, (*p, "request_timeout_seconds"), float, d.request_timeout_seconds,
                                      lambda v: None if v >= 2 else f"must be at least 2 (seconds), not {v!r}"),
        source=r.get(s, (*p, "source"), str, d.source, _non_empty),
    )
    if settings.password_env is not None and settings.token_env is not None:
        r.fail((*p, "token_env"), "password_env and token_env are exclusive: choose one way to authenticate")
        return None
    authenticated = settings.password_env is not None or settings.token_env is not None
    if authenticated and not settings.url.startswith("https://") and not settings.allow_insecure_auth:
        r.fail((*p, "url"), "must be https:// when password_env or token_env is set (credentials would cross "
                            "the network in clear text); allow_insecure_auth: true overrides this for tests")
        return None
    return settings
