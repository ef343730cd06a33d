"""Audit stores: where sealed records live. `open_store(url)` picks one by URL scheme."""

from __future__ import annotations

from pathlib import Path

from gateway.audit.stores.base import AuditStore, RecordsRefused, StoreUnavailable


def open_store(url: str, *, admin_url: str | None = None, base: Path | None = None,
               timeout_seconds: float = 10.0) -> AuditStore:
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `postgresql://...`. Relative SQLite
    paths are relative to `base` (the config file's folder). `timeout_seconds` bounds each PostgreSQL
    connect and command."""
    if url.startswith("sqlite:///"):
        from gateway.audit.stores.sqlite import SQLiteStore

        path = Path(url[len("sqlite:///"):])
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        return SQLiteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.audit.stores.postgres import PostgresStore

        return PostgresStore(url, admin_dsn=admin_url, timeout_seconds=timeout_seconds)
    raise ValueError(f"unsupported audit store {redact_url(url)!r} (expected sqlite:///... or postgresql://...)")


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"


__all__ = ["AuditStore", "RecordsRefused", "StoreUnavailable", "open_store", "redact_url"]
