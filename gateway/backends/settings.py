"""`backends:` — one entry per catalog, the first the default. Options that only some engines read are
named for them (`dsn` and `pool_size` for postgres, `path` and `threads` for duckdb)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gateway.backends.trino_settings import TRINO_KEYS, TrinoSettings, trino_settings
from gateway.config_reader import (
    Check,
    Reader,
    identifier,
    masked_repr,
    one_of,
    positive,
    postgres_dsn,
    read_fields,
    section_keys,
)

BACKEND_TYPES = ("duckdb", "postgres", "trino")
_DEFAULT_SCHEMAS = {"duckdb": "main", "trino": "default"}  # else public
RESERVED_CATALOGS = ("system", "gateway")


@dataclass(frozen=True, kw_only=True)
class BackendSettings:
    """One catalog's backend. A PostgreSQL DSN may hold a password, so repr masks it."""

    name: str
    type: str
    path: Path | None = None  # duckdb
    schema: str = "main"
    tpch_scale: float | None = None  # generate TPC-H into `schema` at first start when the file is missing
    threads: int | None = None  # DuckDB worker threads; None: one per core
    memory_limit: int = 2 * 1024**3  # DuckDB's memory_limit (the engine's buffer pool, for all its queries)
    dsn: str | None = None  # postgres: postgresql://user[:password]@host:port/database
    schemas: tuple[str, ...] | None = None  # postgres: schemas the catalog shows (None: every non-system one)
    pool_size: int = 4  # postgres: connections at most (each running query holds one)
    connect_timeout_seconds: float = 10.0  # postgres: opening one connection
    explain_analyze: bool = False  # postgres: rows and buffers from EXPLAIN (ANALYZE, BUFFERS), run twice
    trino: TrinoSettings | None = None  # trino: its own keys (gateway/backends/trino_settings.py)

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "type": one_of(BACKEND_TYPES, "backend"), "dsn": postgres_dsn, "tpch_scale": positive, "threads": positive,
        "pool_size": positive, "connect_timeout_seconds": positive,
    }
    SIZES: ClassVar[frozenset[str]] = frozenset({"memory_limit"})

    def __repr__(self) -> str:
        return masked_repr(self, ("dsn",))


_BY_HAND = ("name", "type", "schema", "schemas", "trino")


def default_backends(base: Path) -> dict[str, Any]:
    return {"demo": {"type": "duckdb", "path": str(base / "data" / "demo.duckdb"), "schema": "tpch",
                     "tpch_scale": 0.01}}


def read_backends(r: Reader, data: Mapping[str, Any]) -> tuple[BackendSettings, ...]:
    raw = data.get("backends")
    if not isinstance(raw, Mapping) or not raw:
        r.fail(("backends",), "must map catalog names to backends")
        return ()
    result = []
    for name in raw:
        p = ("backends", name)
        if (problem := identifier(name)) is not None or name in RESERVED_CATALOGS:
            r.fail(p, problem or f"catalog name {name!r} is reserved")
            continue
        s = r.section(raw, p, section_keys(BackendSettings, skip=("name", "trino"), extra=TRINO_KEYS))
        kind = r.get(s, (*p, "type"), str, None, BackendSettings.CHECKS["type"])
        if kind is None:
            if "type" not in s:
                r.fail((*p, "type"), "is required")
            continue
        values = read_fields(r, s, p, BackendSettings, skip=_BY_HAND)
        if kind == "duckdb" and values["path"] is None:
            r.fail((*p, "path"), "is required for a duckdb backend")
        if kind == "postgres" and values["dsn"] is None and "dsn" not in s:
            r.fail((*p, "dsn"), "is required for a postgres backend")
        schemas = r.get(s, (*p, "schemas"), list, None)
        if schemas is not None and (not schemas or not all(isinstance(x, str) and x for x in schemas)):
            r.fail((*p, "schemas"), "must be a list of schema names")
            schemas = None
        result.append(BackendSettings(
            **values, name=name, type=kind,
            schema=r.get(s, (*p, "schema"), str, _DEFAULT_SCHEMAS.get(kind, "public"), identifier),
            schemas=tuple(schemas) if schemas is not None else None,
            trino=trino_settings(r, s, p, kind),
        ))
    return tuple(result)
