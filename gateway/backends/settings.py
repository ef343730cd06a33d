"""`backends:` — one entry per catalog, the first the default. Options that only some engines read are
named for them (`dsn` and `pool_size` for postgres, `path` and `threads` for duckdb)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from gateway.backends.credentials import SecretSpec, parse_secret_spec
from gateway.backends.resilience import ResilienceSettings, parse_resilience
from gateway.backends.snowflake_settings import KEYS as SNOWFLAKE_KEYS
from gateway.backends.snowflake_settings import SnowflakeSettings, snowflake_settings
from gateway.backends.trino_settings import TRINO_KEYS, TrinoSettings, trino_settings
from gateway.config_reader import (
    Check,
    Reader,
    identifier,
    mask_url,
    masked_repr,
    one_of,
    positive,
    postgres_dsn,
    read_fields,
    section_keys,
)

BACKEND_TYPES = ("duckdb", "postgres", "trino", "snowflake")
_DEFAULT_SCHEMAS = {"duckdb": "main", "trino": "default"}  # else public
RESERVED_CATALOGS = ("system", "gateway")
ISOLATIONS = ("thread", "process")  # duckdb: where the engine runs (gateway/backends/duckdb_process.py)


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
    isolation: str = "thread"  # duckdb: "process" runs the engine in a child process (its own GIL)
    dsn: str | None = None  # postgres: postgresql://user[:password]@host:port/database
    schemas: tuple[str, ...] | None = None  # postgres: schemas the catalog shows (None: every non-system one)
    pool_size: int = 4  # postgres: connections at most (each running query holds one)
    connect_timeout_seconds: float = 10.0  # postgres: opening one connection
    explain_analyze: bool = False  # postgres: rows and buffers from EXPLAIN (ANALYZE, BUFFERS), run twice
    trino: TrinoSettings | None = None  # trino: its own keys (gateway/backends/trino_settings.py)
    # docs/backends-operations.md: secrets by source (never their values), pool wait, breaker, retries
    password: SecretSpec | None = None  # postgres: the DSN's password, from {env|file|command}
    credentials: Mapping[str, SecretSpec] = field(default_factory=dict)  # other secrets, by kind (private_key)
    pool_timeout_seconds: float = 10.0  # waiting for a free pooled connection; counts against the time limit
    resilience: ResilienceSettings = field(default_factory=ResilienceSettings)  # keys circuit: and retries:
    snowflake: SnowflakeSettings | None = None  # snowflake: its own keys (gateway/backends/snowflake_settings.py)

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "type": one_of(BACKEND_TYPES, "backend"), "isolation": one_of(ISOLATIONS, "isolation"), "dsn": postgres_dsn,
        "tpch_scale": positive, "threads": positive,
        "pool_size": positive, "connect_timeout_seconds": positive, "pool_timeout_seconds": positive,
    }
    SIZES: ClassVar[frozenset[str]] = frozenset({"memory_limit"})

    def __repr__(self) -> str:
        return masked_repr(self, ("dsn",))


_BY_HAND = ("name", "type", "schema", "schemas", "password", "credentials", "resilience", "trino", "snowflake")


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
        s = r.section(raw, p, section_keys(BackendSettings, skip=("name", "resilience", "trino", "snowflake"),
                                           extra=("circuit", "retries", *TRINO_KEYS, *SNOWFLAKE_KEYS)))
        kind = r.get(s, (*p, "type"), str, None, BackendSettings.CHECKS["type"])
        if kind is None:
            if "type" not in s:
                r.fail((*p, "type"), "is required")
            continue
        _refuse_other_engines_keys(r, s, p, kind)
        values = read_fields(r, s, p, BackendSettings, skip=_BY_HAND)
        if kind == "duckdb" and values["path"] is None:
            r.fail((*p, "path"), "is required for a duckdb backend")
        if kind == "postgres" and values["dsn"] is None and "dsn" not in s:
            r.fail((*p, "dsn"), "is required for a postgres backend")
        schemas = r.get(s, (*p, "schemas"), list, None)
        if schemas is not None and (not schemas or not all(isinstance(x, str) and x for x in schemas)):
            r.fail((*p, "schemas"), "must be a list of schema names")
            schemas = None
        operations = _operations(r, s, p, kind, values["dsn"])
        result.append(BackendSettings(
            **values, name=name, type=kind,
            schema=r.get(s, (*p, "schema"), str, _DEFAULT_SCHEMAS.get(kind, "public"), identifier),
            schemas=tuple(schemas) if schemas is not None else None,
            **operations,
            trino=_trino(r, s, p, kind, operations),
            snowflake=snowflake_settings(r, s, p, password=operations["password"],
                                         credentials=operations["credentials"]) if kind == "snowflake" else None,
        ))
    return tuple(result)


# Keys only some engines read; a key is refused on a backend whose engine does not (`user` is both's).
ENGINE_KEYS: dict[str, frozenset[str]] = {"trino": TRINO_KEYS, "snowflake": SNOWFLAKE_KEYS,
                                          "duckdb": frozenset({"isolation"})}


def _refuse_other_engines_keys(r: Reader, s: Mapping[str, Any], p: tuple[str, ...], kind: str) -> None:
    own = ENGINE_KEYS.get(kind, frozenset())
    for key in sorted(set(s) - own):
        owners = sorted(engine for engine, keys in ENGINE_KEYS.items() if key in keys)
        if owners:
            r.fail((*p, key), f"applies to {' and '.join(owners)} backends only, not to {kind}")


def _trino(r: Reader, s: Mapping[str, Any], p: tuple[str, ...], kind: str,
           operations: Mapping[str, Any]) -> TrinoSettings | None:
    """The Trino keys, and: a rotating secret (`password:` for Basic auth with `user`, `credentials.token` for a
    bearer token) crosses the network only over https, as password_env and token_env do."""
    settings = trino_settings(r, s, p, kind)
    if settings is None:
        return None
    rotating = operations["password"] is not None or "token" in operations["credentials"]
    if rotating and not settings.url.startswith("https://") and not settings.allow_insecure_auth:
        r.fail((*p, "url"), "must be https:// when a password or token is set (credentials would cross the "
                            "network in clear text); allow_insecure_auth: true overrides this for tests")
        return None
    if rotating and (settings.password_env is not None or settings.token_env is not None):
        r.fail((*p, "password"), "is given twice: use password/credentials.token or password_env/token_env")
        return None
    return settings


def _operations(r: Reader, s: Mapping[str, Any], p: tuple[str, ...], kind: str, dsn: str | None) -> dict[str, Any]:
    """Secrets, circuit breaker and retries of one backend (docs/backends-operations.md)."""
    password = _secret(r, s.get("password"), (*p, "password"))
    if password is not None and kind not in ("postgres", "snowflake", "trino"):
        r.fail((*p, "password"), f"is not used by a {kind} backend")
    if password is not None and dsn is not None and mask_url(dsn) != dsn:
        r.fail((*p, "password"), "is given twice: remove the password from the dsn")
    raw_credentials = s.get("credentials") or {}
    if not isinstance(raw_credentials, Mapping):
        r.fail((*p, "credentials"), "must map secret kinds to {env|file|command} sources")
        raw_credentials = {}
    credentials = {str(k): spec for k, v in raw_credentials.items()
                   if (spec := _secret(r, v, (*p, "credentials", str(k)))) is not None}
    resilience = parse_resilience(s.get("circuit"), s.get("retries"))
    if isinstance(resilience, str):
        r.fail(p, resilience)
        resilience = ResilienceSettings()
    return {"password": password, "credentials": credentials, "resilience": resilience}


def _secret(r: Reader, raw: Any, path: tuple[str, ...]) -> SecretSpec | None:
    if raw is None:
        return None
    spec = parse_secret_spec(raw, base=r.base)
    if isinstance(spec, str):
        r.fail(path, spec)
        return None
    return spec
