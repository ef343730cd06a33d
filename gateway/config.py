"""gateway.yaml -> typed settings. The one place that knows every key and its default.

Every key is optional; no file at all gives the embedded demo. Any key can be overridden by an environment
variable `GATEWAY__SECTION__KEY` (`GATEWAY__SERVER__PORT=8181`, `GATEWAY__BACKENDS__DEMO__PATH=/d.duckdb`);
its value is read as YAML, so numbers and booleans keep their type. Relative paths are relative to the config
file's folder (or to the working directory when there is no file). Errors name the file, line and key:

    gateway.yaml:12: backends.demo.type: unknown backend 'duckbd' (expected one of: duckdb, postgres, trino)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.backends.trino_settings import TRINO_KEYS, TrinoSettings, trino_settings
from gateway.examples import EXAMPLE_POLICIES
from gateway.units import parse_size

BACKEND_TYPES = ("duckdb", "postgres", "trino")
_DEFAULT_SCHEMAS = {"duckdb": "main", "trino": "default"}  # else public
IDENTITY_MODES = ("dev", "jwt", "api_keys")
# Asymmetric only: keys come from a JWKS, and an HMAC "key" there would be public (key confusion, CVE-2022-29217).
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_JWT_LEEWAY_SECONDS = 60.0
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """Invalid configuration; `messages` are `file:line: key: problem` lines."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    environment: str = "gateway"
    max_request_bytes: int = 1024 * 1024
    shutdown_grace_seconds: float = 30.0
    # Connection bounds (gateway/connection_guard.py): a slow or silent client never holds a socket for long.
    header_timeout_seconds: float = 10.0  # from connect (or the end of the last response) to a request's headers
    body_timeout_seconds: float = 30.0  # from the end of the headers to the end of the body
    keep_alive_timeout_seconds: float = 5.0  # an idle keep-alive connection is closed after this long
    max_connections: int = 4096  # open connections at once; beyond it the oldest stalled one is dropped
    max_header_bytes: int = 256 * 1024  # request line and headers together
    shutdown_delivery_seconds: float = 5.0  # then: how long cancelled queries' clients have to fetch the news
    tls_cert: Path | None = None  # server.tls.cert / server.tls.key: PEM files; both set -> HTTPS
    tls_key: Path | None = None


@dataclass(frozen=True, kw_only=True)
class ProtocolSettings:
    page_rows: int = 4096  # at most this many rows per response
    page_bytes: int = 1024 * 1024  # and about this many bytes of JSON
    max_wait_seconds: float = 1.0  # how long one poll waits for new rows before answering RUNNING
    client_timeout_seconds: float = 300.0  # a query nobody polls for this long is cancelled (Trino: 5m)
    inline_first_page: bool = False  # answer POST /v1/statement with the first rows (Trino: always QUEUED)
    query_history_max: int = 1000  # ended queries kept for GET /v1/query/{id} and system.runtime.queries
    query_history_seconds: float = 900.0  # and for at most this long after they ended


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

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={_mask_url(v) if k == 'dsn' else v!r}" for k, v in vars(self).items())
        return f"BackendSettings({fields})"


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    dir: Path = Path("policies")
    reload_seconds: float = 2.0  # how often the directory is checked for changed files
    shipped: bool = False  # `dir` is the example set inside the package (no policies.dir, no ./policies)


@dataclass(frozen=True, kw_only=True)
class ClaimSettings:
    """identity.jwt.claims: which claim (a name, or a dotted path into nested objects) gives what."""

    user: tuple[str, ...] = ("sub",)  # the first present one wins (Azure AD: preferred_username, upn)
    groups: tuple[str, ...] = ("groups",)  # all present ones are merged (Azure AD: roles, groups)
    cost_center: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)  # attribute name -> claim path


@dataclass(frozen=True, kw_only=True)
class JwtSettings:
    jwks_url: str | None = None
    jwks_file: Path | None = None
    issuer: tuple[str, ...] = ()  # exact match against one of these
    audience: tuple[str, ...] = ()  # the token's aud (string or list) must contain one of these
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: float = 30.0
    jwks_cache_seconds: float = 300.0  # cached keys are used this long, even while the IdP is down
    jwks_min_refresh_seconds: float = 30.0  # an unknown kid refetches the JWKS at most this often
    jwks_timeout_seconds: float = 5.0
    allowed_tenants: tuple[str, ...] = ()  # when set, the `tid` claim must be one of these (Azure AD)
    claims: ClaimSettings = field(default_factory=ClaimSettings)


@dataclass(frozen=True, kw_only=True)
class ApiKeySettings:
    file: Path | None = None
    postgres: str | None = None  # asyncpg DSN; may hold a password, so repr masks it

    def __repr__(self) -> str:
        dsn = re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", self.postgres) if self.postgres else None
        return f"ApiKeySettings(file={self.file!r}, postgres={dsn!r})"


@dataclass(frozen=True, kw_only=True)
class FailureLimitSettings:
    """Failed authentications per client address and claimed principal: a token bucket of `burst`, refilled
    `per_minute`; credentials that verified within `verified_cache_seconds` are still checked while slowed."""

    burst: int = 10
    per_minute: float = 30.0
    verified_cache_entries: int = 10_000  # keyed hashes of recently verified credentials (never the secret)
    verified_cache_seconds: float = 900.0


@dataclass(frozen=True, kw_only=True)
class IdentitySettings:
    mode: str = "dev"
    dev_users_file: Path | None = None  # default: dev_users.yaml in the policies directory, if present
    allow_dev_on_public_host: bool = False
    jwt: JwtSettings | None = None
    api_keys: ApiKeySettings | None = None
    failure_limit: FailureLimitSettings = field(default_factory=FailureLimitSettings)


@dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True, kw_only=True)
class LimitSettings:
    """Bounds on what one statement may cost the gateway (gateway/sql/limits.py checks the statement ones)."""

    max_statement_bytes: int = 256 * 1024  # any statement text: body, prepared statement, EXECUTE IMMEDIATE
    max_statement_tokens: int = 100_000  # counted before parsing: bounds the syntax tree's size
    max_nesting_depth: int = 100  # parentheses inside each other, counted before parsing
    max_boolean_terms: int = 500  # AND/OR conditions in one statement (DuckDB's optimizer is quadratic in them)
    max_result_bytes: int = 1024**3  # JSON bytes of one query's result; a resource group may set its own
    planning_threads: int = 2  # large statements are planned on these threads, off the event loop
    failed_plan_cache_entries: int = 1024  # statements that failed to plan, answered again without planning


@dataclass(frozen=True, kw_only=True)
class MetadataSettings:
    refresh_seconds: float = 60.0


AUDIT_FAILURE_MODES = ("spool", "deny")


@dataclass(frozen=True, kw_only=True)
class AuditSettings:
    """The audit trail (gateway/audit/). Store URLs may hold a password, so repr masks them."""

    store: str = "sqlite:///data/audit.db"  # sqlite:///relative/or////absolute/path | postgresql://...
    admin_store: str | None = None  # owner role that creates/migrates the PostgreSQL schema and grants
    on_failure: str = "spool"  # spool: journal records locally while the store is down | deny: refuse queries
    spool_dir: Path = Path("data/audit-spool")
    spool_max_bytes: int = 1024**3  # beyond this much spooled, queries are refused (fail closed)
    batch_size: int = 1000
    flush_interval_seconds: float = 0.05
    checkpoint_records: int = 10_000
    checkpoint_seconds: float = 10.0
    redact_literals: bool = False
    retention_days: int | None = None  # what `gateway audit purge` deletes by default; never the gateway itself
    store_timeout_seconds: float = 10.0  # each PostgreSQL connect and command (a write that hangs is an outage)
    probe_interval_seconds: float = 1.0  # how often the store is probed with one round trip
    probe_timeout_seconds: float = 2.0  # a probe unanswered this long marks the store down (deny engages)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={_mask_url(v) if k.endswith('store') else v!r}" for k, v in vars(self).items())
        return f"AuditSettings({fields})"


def _mask_url(url: str | None) -> str | None:
    """The URL with its password (user:password@ and ?password=...) replaced by ***."""
    if not url:
        return url
    masked = re.sub(r"(//[^/?#@]*?:)[^@/?#]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", masked, flags=re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class WorkloadSettings:
    """Workload admission (gateway/workload/); the resource groups themselves are in policies/workload.yaml."""

    redis: str | None = None  # redis://host:port/db: limits hold across all replicas; None: per process
    key_prefix: str = "gateway:workload:"
    lease_seconds: float = 15.0  # a crashed replica's slots come back after at most this long
    poll_seconds: float = 0.05  # how often queued queries look for a slot freed on another replica
    retry_seconds: float = 5.0  # after a Redis failure: per-process limits this long, then Redis again
    redis_timeout_seconds: float = 1.0
    admin_groups: tuple[str, ...] = ("admins",)  # may list and kill every query

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={_mask_url(v) if k == 'redis' else v!r}" for k, v in vars(self).items())
        return f"WorkloadSettings({fields})"


@dataclass(frozen=True, kw_only=True)
class CacheSettings:
    """The result cache (gateway/cache/)."""

    enabled: bool = True
    max_bytes: int = 256 * 1024 * 1024  # in-process tier bound (accepts 256MB, 1GB, ...)
    max_entry_bytes: int = 8 * 1024 * 1024  # larger results are streamed, not cached
    ttl_seconds: float = 300.0  # default; a resource group's cache_ttl overrides it
    coalesce_stall_seconds: float = 2.0  # followers stop waiting for a leader idle on its client this long
    redis: str | None = None  # redis://host:port/db: the tier shared by all replicas
    redis_prefix: str = "gateway:cache:"
    admin_groups: tuple[str, ...] = ("admins",)  # may purge through /api/cache/purge

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={_mask_url(v) if k == 'redis' else v!r}" for k, v in vars(self).items())
        return f"CacheSettings({fields})"


@dataclass(frozen=True, kw_only=True)
class MaskingSettings:
    """Where the secret that keys hash masks comes from (gateway/mask_key.py). Never the secret itself."""

    key_env: str | None = None  # name of an environment variable holding the key (wins over key_file)
    key_file: Path = Path("data/mask.key")  # created with a random key (mode 0600) when missing


@dataclass(frozen=True, kw_only=True)
class CostSettings:
    """Cost metering, budgets and chargeback (gateway/cost/); rates and budgets are in policies/cost.yaml."""

    enabled: bool = True  # meter queries into the ledger and apply budgets
    webhook_url: str | None = None  # budget alerts are POSTed here as JSON
    webhook_timeout_seconds: float = 5.0
    webhook_attempts: int = 6  # tries per alert, with exponential backoff from webhook_backoff_seconds
    webhook_backoff_seconds: float = 0.5
    finance_groups: tuple[str, ...] = ("finance", "admins")  # may read /api/chargeback
    redis: str | None = None  # redis://host:port/db: budget counters shared by every replica
    redis_prefix: str = "gateway:cost:"
    sync_seconds: float = 1.0  # how often a replica pushes its charges and reads the cluster's totals

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={_mask_url(v) if k in ('webhook_url', 'redis') else v!r}"
                           for k, v in vars(self).items())
        return f"CostSettings({fields})"


@dataclass(frozen=True, kw_only=True)
class Settings:
    source: str = "<defaults>"
    server: ServerSettings = field(default_factory=ServerSettings)
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    backends: tuple[BackendSettings, ...] = ()
    policies: PolicySettings = field(default_factory=PolicySettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    cost: CostSettings = field(default_factory=CostSettings)
    masking: MaskingSettings = field(default_factory=MaskingSettings)

    @property
    def default_catalog(self) -> str:
        return self.backends[0].name


def default_backends(base: Path) -> dict[str, Any]:
    return {"demo": {"type": "duckdb", "path": str(base / "data" / "demo.duckdb"), "schema": "tpch",
                     "tpch_scale": 0.01}}


# ---------------------------------------------------------------------------------------------------------
# Reading YAML with line numbers


@dataclass
class _Source:
    """Raw config values plus where each came from, for error messages."""

    name: str
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    env_keys: dict[tuple[str, ...], str] = field(default_factory=dict)

    def where(self, path: tuple[str, ...]) -> str:
        if path in self.env_keys:
            return f"environment {self.env_keys[path]}"
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return f"{self.name}:{self.lines[path[:end]]}"
        return self.name


def _to_python(node: yaml.Node, path: tuple[str, ...], source: _Source) -> Any:
    source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            result[key] = _to_python(value_node, (*path, key), source)
            source.lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, str(i)), source) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _read_yaml(path: Path, source: _Source) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{path}{line}: invalid YAML: {getattr(error, 'problem', error)}"]) from None
    if node is None:
        return {}
    data = _to_python(node, (), source)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the file must hold a mapping of sections"])
    return data


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str], source: _Source) -> None:
    for name, raw in environ.items():
        if not name.startswith("GATEWAY__"):
            continue
        path = tuple(part.lower() for part in name[len("GATEWAY__"):].split("__") if part)
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        target = data
        for part in path[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = {}
                target[part] = child
            target = child
        target[path[-1]] = value
        source.env_keys[path] = name


# ---------------------------------------------------------------------------------------------------------
# Validation


class _Reader:
    """Takes typed values out of one section, collecting every problem instead of stopping at the first."""

    def __init__(self, source: _Source, errors: list[str], base: Path) -> None:
        self.source = source
        self.errors = errors
        self.base = base

    def fail(self, path: tuple[str, ...], message: str) -> None:
        self.errors.append(f"{self.source.where(path)}: {'.'.join(path)}: {message}")

    def section(self, data: Mapping[str, Any], path: tuple[str, ...], allowed: set[str]) -> Mapping[str, Any]:
        value = data.get(path[-1], {}) if path else data
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                hint = _closest(key, allowed)
                self.fail((*path, key), f"unknown key{f' (did you mean {hint!r}?)' if hint else ''}")
        return value

    def get(self, data: Mapping[str, Any], path: tuple[str, ...], kind: type, default: Any,
            check: Callable[[Any], str | None] | None = None) -> Any:
        key = path[-1]
        if key not in data or data[key] is None:
            return default
        value = data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is Path:
            if not isinstance(value, str) or not value:
                self.fail(path, "must be a path")
                return default
            candidate = Path(value).expanduser()
            return candidate if candidate.is_absolute() else self.base / candidate
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(path, f"must be {_KIND_NAMES.get(kind, kind.__name__)}, not {value!r}")
            return default
        if check is not None and (problem := check(value)) is not None:
            self.fail(path, problem)
            return default
        return value


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _closest(key: str, allowed: set[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(key, sorted(allowed), n=1)
    return matches[0] if matches else None


def _one_of(choices: tuple[str, ...], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"unknown {what} {value!r} (expected one of: {', '.join(choices)})"

    return check


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {value!r}"


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a port number (0-65535), not {value!r}"


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _identifier(value: Any) -> str | None:
    return None if _IDENTIFIER.match(value) else f"must be a lowercase identifier, not {value!r}"


def _postgres_dsn(value: Any) -> str | None:
    if value.startswith(("postgresql://", "postgres://")):
        return None
    return f"must be a postgresql:// URL, not {_mask_url(value)!r}"


def _server(r: _Reader, data: Mapping[str, Any]) -> ServerSettings:
    p = ("server",)
    s = r.section(data, p, {"host", "port", "environment", "max_request_bytes", "shutdown_grace_seconds",
                            "shutdown_delivery_seconds", "tls",
                            "header_timeout_seconds", "body_timeout_seconds", "keep_alive_timeout_seconds",
                            "max_connections", "max_header_bytes"})
    d = ServerSettings()
    tls = r.section(s, (*p, "tls"), {"cert", "key"})
    cert = r.get(tls, (*p, "tls", "cert"), Path, None)
    key = r.get(tls, (*p, "tls", "key"), Path, None)
    if (cert is None) != (key is None):
        r.fail((*p, "tls"), "needs both cert and key")
    for name, file in (("cert", cert), ("key", key)):
        if file is not None and not file.is_file():
            r.fail((*p, "tls", name), f"no such file: {file}")
    return ServerSettings(
        host=r.get(s, (*p, "host"), str, d.host),
        port=r.get(s, (*p, "port"), int, d.port, _port),
        environment=r.get(s, (*p, "environment"), str, d.environment),
        max_request_bytes=r.get(s, (*p, "max_request_bytes"), int, d.max_request_bytes, _positive),
        shutdown_grace_seconds=r.get(s, (*p, "shutdown_grace_seconds"), float, d.shutdown_grace_seconds),
        header_timeout_seconds=r.get(s, (*p, "header_timeout_seconds"), float, d.header_timeout_seconds,
                                     _positive),
        body_timeout_seconds=r.get(s, (*p, "body_timeout_seconds"), float, d.body_timeout_seconds, _positive),
        keep_alive_timeout_seconds=r.get(s, (*p, "keep_alive_timeout_seconds"), float,
                                         d.keep_alive_timeout_seconds, _positive),
        max_connections=r.get(s, (*p, "max_connections"), int, d.max_connections, _positive),
        max_header_bytes=_bytes(r, s, (*p, "max_header_bytes"), d.max_header_bytes),
        shutdown_delivery_seconds=r.get(s, (*p, "shutdown_delivery_seconds"), float, d.shutdown_delivery_seconds,
                                        _positive),
        tls_cert=cert,
        tls_key=key,
    )


def _protocol(r: _Reader, data: Mapping[str, Any]) -> ProtocolSettings:
    p = ("protocol",)
    s = r.section(data, p, {"page_rows", "page_bytes", "max_wait_seconds", "client_timeout_seconds",
                            "inline_first_page", "query_history_max", "query_history_seconds"})
    d = ProtocolSettings()
    return ProtocolSettings(
        page_rows=r.get(s, (*p, "page_rows"), int, d.page_rows, _positive),
        page_bytes=r.get(s, (*p, "page_bytes"), int, d.page_bytes, _positive),
        max_wait_seconds=r.get(s, (*p, "max_wait_seconds"), float, d.max_wait_seconds, _positive),
        client_timeout_seconds=r.get(s, (*p, "client_timeout_seconds"), float, d.client_timeout_seconds,
                                     _positive),
        inline_first_page=r.get(s, (*p, "inline_first_page"), bool, d.inline_first_page),
        query_history_max=r.get(s, (*p, "query_history_max"), int, d.query_history_max, _positive),
        query_history_seconds=r.get(s, (*p, "query_history_seconds"), float, d.query_history_seconds,
                                    _positive),
    )


def _backends(r: _Reader, data: Mapping[str, Any], base: Path) -> tuple[BackendSettings, ...]:
    raw = data.get("backends")
    if not isinstance(raw, Mapping) or not raw:
        r.fail(("backends",), "must map catalog names to backends")
        return ()
    result = []
    for name in raw:
        p = ("backends", name)
        if (problem := _identifier(name)) is not None or name in ("system", "gateway"):
            r.fail(p, problem or f"catalog name {name!r} is reserved")
            continue
        s = r.section(raw, p, {"type", "path", "schema", "tpch_scale", "threads", "memory_limit", "dsn", "schemas",
                               "pool_size", "connect_timeout_seconds", "explain_analyze", *TRINO_KEYS})
        kind = r.get(s, (*p, "type"), str, None, _one_of(BACKEND_TYPES, "backend"))
        if kind is None:
            if "type" not in s:
                r.fail((*p, "type"), "is required")
            continue
        path = r.get(s, (*p, "path"), Path, None)
        if kind == "duckdb" and path is None:
            r.fail((*p, "path"), "is required for a duckdb backend")
        dsn = r.get(s, (*p, "dsn"), str, None, _postgres_dsn)
        if kind == "postgres" and dsn is None and "dsn" not in s:
            r.fail((*p, "dsn"), "is required for a postgres backend")
        d = BackendSettings(name=name, type=kind)
        schemas = r.get(s, (*p, "schemas"), list, None)
        if schemas is not None and (not schemas or not all(isinstance(x, str) and x for x in schemas)):
            r.fail((*p, "schemas"), "must be a list of schema names")
            schemas = None
        result.append(BackendSettings(
            name=name,
            type=kind,
            path=path,
            schema=r.get(s, (*p, "schema"), str, _DEFAULT_SCHEMAS.get(kind, "public"), _identifier),
            tpch_scale=r.get(s, (*p, "tpch_scale"), float, None, _positive),
            threads=r.get(s, (*p, "threads"), int, None, _positive),
            memory_limit=_bytes(r, s, (*p, "memory_limit"), BackendSettings.memory_limit),
            dsn=dsn,
            schemas=tuple(schemas) if schemas is not None else None,
            pool_size=r.get(s, (*p, "pool_size"), int, d.pool_size, _positive),
            connect_timeout_seconds=r.get(s, (*p, "connect_timeout_seconds"), float, d.connect_timeout_seconds,
                                          _positive),
            explain_analyze=r.get(s, (*p, "explain_analyze"), bool, d.explain_analyze),
            trino=trino_settings(r, s, p, kind),
        ))
    return tuple(result)


def _policies(r: _Reader, data: Mapping[str, Any]) -> PolicySettings:
    p = ("policies",)
    s = r.section(data, p, {"dir", "reload_seconds"})
    default = r.base / "policies"
    shipped = s.get("dir") is None and not default.is_dir()
    return PolicySettings(
        dir=EXAMPLE_POLICIES if shipped else r.get(s, (*p, "dir"), Path, default),
        reload_seconds=r.get(s, (*p, "reload_seconds"), float, 2.0, _positive),
        shipped=shipped,
    )


def _identity(r: _Reader, data: Mapping[str, Any]) -> IdentitySettings:
    p = ("identity",)
    s = r.section(data, p, {"mode", "dev_users_file", "allow_dev_on_public_host", "jwt", "api_keys",
                            "failure_limit"})
    d = IdentitySettings()
    mode = r.get(s, (*p, "mode"), str, d.mode, _one_of(IDENTITY_MODES, "identity mode"))
    jwt = _jwt(r, s) if s.get("jwt") is not None else None
    api_keys = _api_keys(r, s) if s.get("api_keys") is not None else None
    if mode == "jwt" and jwt is None:
        r.fail((*p, "jwt"), "is required when identity.mode is 'jwt'")
    if mode == "api_keys" and api_keys is None:
        r.fail((*p, "api_keys"), "is required when identity.mode is 'api_keys'")
    fl = r.section(s, (*p, "failure_limit"), {"burst", "per_minute", "verified_cache_entries",
                                              "verified_cache_seconds"})
    fd = FailureLimitSettings()
    return IdentitySettings(
        mode=mode,
        dev_users_file=r.get(s, (*p, "dev_users_file"), Path, None),
        allow_dev_on_public_host=r.get(s, (*p, "allow_dev_on_public_host"), bool, False),
        jwt=jwt,
        api_keys=api_keys,
        failure_limit=FailureLimitSettings(
            burst=r.get(fl, (*p, "failure_limit", "burst"), int, fd.burst, _positive),
            per_minute=r.get(fl, (*p, "failure_limit", "per_minute"), float, fd.per_minute, _positive),
            verified_cache_entries=r.get(fl, (*p, "failure_limit", "verified_cache_entries"), int,
                                         fd.verified_cache_entries, _positive),
            verified_cache_seconds=r.get(fl, (*p, "failure_limit", "verified_cache_seconds"), float,
                                         fd.verified_cache_seconds, _positive)),
    )


def _strings(r: _Reader, data: Mapping[str, Any], path: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    """A string or a non-empty list of non-empty strings."""
    value = data.get(path[-1])
    if value is None:
        return default
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        r.fail(path, f"must be a string or a list of strings, not {value!r}")
        return default
    return tuple(items)


def _jwks_url(value: Any) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return None  # a local test IdP; anything else must be https
    return f"must be an https:// URL (http only on a loopback address), not {value!r}"


def _leeway(value: Any) -> str | None:
    return None if 0 <= value <= MAX_JWT_LEEWAY_SECONDS else f"must be between 0 and 60 seconds, not {value!r}"


def _jwt(r: _Reader, data: Mapping[str, Any]) -> JwtSettings:
    p = ("identity", "jwt")
    s = r.section(data, p, {"jwks_url", "jwks_file", "issuer", "audience", "algorithms", "leeway_seconds",
                            "jwks_cache_seconds", "jwks_min_refresh_seconds", "jwks_timeout_seconds",
                            "allowed_tenants", "claims"})
    d = JwtSettings()
    url = r.get(s, (*p, "jwks_url"), str, None, _jwks_url)
    file = r.get(s, (*p, "jwks_file"), Path, None)
    if (s.get("jwks_url") is None) == (s.get("jwks_file") is None):
        r.fail(p, "needs exactly one of jwks_url or jwks_file")
    if file is not None and not file.is_file():
        r.fail((*p, "jwks_file"), f"no such file: {file}")
    issuer = _strings(r, s, (*p, "issuer"), ())
    audience = _strings(r, s, (*p, "audience"), ())
    for key, value in (("issuer", issuer), ("audience", audience)):
        if not value and key not in s:
            r.fail((*p, key), "is required")
    algorithms = _strings(r, s, (*p, "algorithms"), d.algorithms)
    for alg in algorithms:
        if alg not in JWT_ALGORITHMS:
            why = " (HMAC needs a shared secret; keys here come from a public JWKS)" if alg.upper().startswith(
                "HS") else ""
            r.fail((*p, "algorithms"), f"algorithm {alg!r} is not allowed{why}; use some of: "
                                       f"{', '.join(JWT_ALGORITHMS)}")
    return JwtSettings(
        jwks_url=url,
        jwks_file=file,
        issuer=issuer,
        audience=audience,
        algorithms=algorithms,
        leeway_seconds=r.get(s, (*p, "leeway_seconds"), float, d.leeway_seconds, _leeway),
        jwks_cache_seconds=r.get(s, (*p, "jwks_cache_seconds"), float, d.jwks_cache_seconds, _positive),
        jwks_min_refresh_seconds=r.get(s, (*p, "jwks_min_refresh_seconds"), float, d.jwks_min_refresh_seconds,
                                       _positive),
        jwks_timeout_seconds=r.get(s, (*p, "jwks_timeout_seconds"), float, d.jwks_timeout_seconds, _positive),
        allowed_tenants=_strings(r, s, (*p, "allowed_tenants"), ()),
        claims=_claims(r, s),
    )


def _claims(r: _Reader, data: Mapping[str, Any]) -> ClaimSettings:
    p = ("identity", "jwt", "claims")
    s = r.section(data, p, {"user", "groups", "cost_center", "attributes"})
    d = ClaimSettings()
    attributes = r.section(s, (*p, "attributes"), set(s.get("attributes") or {}))
    for name, claim in attributes.items():
        if not isinstance(claim, str) or not claim:
            r.fail((*p, "attributes", name), f"must be a claim name or path, not {claim!r}")
    return ClaimSettings(
        user=_strings(r, s, (*p, "user"), d.user),
        groups=_strings(r, s, (*p, "groups"), d.groups),
        cost_center=r.get(s, (*p, "cost_center"), str, None),
        attributes={str(k): v for k, v in attributes.items() if isinstance(v, str) and v},
    )


def _api_keys(r: _Reader, data: Mapping[str, Any]) -> ApiKeySettings:
    p = ("identity", "api_keys")
    s = r.section(data, p, {"file", "postgres"})
    file = r.get(s, (*p, "file"), Path, None)
    postgres = r.get(s, (*p, "postgres"), str, None)
    if (file is None) == (postgres is None):
        r.fail(p, "needs exactly one of file or postgres")
    if postgres is not None and not postgres.startswith(("postgresql://", "postgres://")):
        r.fail((*p, "postgres"), "must be a postgresql:// DSN")
    return ApiKeySettings(file=file, postgres=postgres)


def _logging(r: _Reader, data: Mapping[str, Any]) -> LoggingSettings:
    p = ("logging",)
    s = r.section(data, p, {"level", "format"})
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    return LoggingSettings(
        level=r.get(s, (*p, "level"), str, "INFO", _one_of(levels, "log level")),
        format=r.get(s, (*p, "format"), str, "text", _one_of(LOG_FORMATS, "log format")),
    )


def _metadata(r: _Reader, data: Mapping[str, Any]) -> MetadataSettings:
    p = ("metadata",)
    s = r.section(data, p, {"refresh_seconds"})
    return MetadataSettings(refresh_seconds=r.get(s, (*p, "refresh_seconds"), float, 60.0, _positive))


def _store_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return None
    return "must be sqlite:///path/to/audit.db or postgresql://user@host:port/database"


def _audit(r: _Reader, data: Mapping[str, Any]) -> AuditSettings:
    p = ("audit",)
    s = r.section(data, p, {"store", "admin_store", "on_failure", "spool_dir", "spool_max_bytes", "batch_size",
                            "flush_interval_seconds", "checkpoint_records", "checkpoint_seconds", "redact_literals",
                            "retention_days", "store_timeout_seconds", "probe_interval_seconds",
                            "probe_timeout_seconds"})
    d = AuditSettings()
    store = r.get(s, (*p, "store"), str, d.store, _store_url)
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///"):]).is_absolute():
        store = f"sqlite:///{r.base / store[len('sqlite:///'):]}"  # relative to the config file, as paths are
    admin = r.get(s, (*p, "admin_store"), str, None, _store_url)
    if admin is not None and not store.startswith("postgres"):
        r.fail((*p, "admin_store"), "is only used with a postgresql:// store")
    return AuditSettings(
        store=store,
        admin_store=admin,
        on_failure=r.get(s, (*p, "on_failure"), str, d.on_failure, _one_of(AUDIT_FAILURE_MODES, "on_failure")),
        spool_dir=r.get(s, (*p, "spool_dir"), Path, r.base / d.spool_dir),
        spool_max_bytes=r.get(s, (*p, "spool_max_bytes"), int, d.spool_max_bytes, _positive),
        batch_size=r.get(s, (*p, "batch_size"), int, d.batch_size, _positive),
        flush_interval_seconds=r.get(s, (*p, "flush_interval_seconds"), float, d.flush_interval_seconds, _positive),
        checkpoint_records=r.get(s, (*p, "checkpoint_records"), int, d.checkpoint_records, _positive),
        checkpoint_seconds=r.get(s, (*p, "checkpoint_seconds"), float, d.checkpoint_seconds, _positive),
        redact_literals=r.get(s, (*p, "redact_literals"), bool, d.redact_literals),
        retention_days=r.get(s, (*p, "retention_days"), int, None, _positive),
        store_timeout_seconds=r.get(s, (*p, "store_timeout_seconds"), float, d.store_timeout_seconds, _positive),
        probe_interval_seconds=r.get(s, (*p, "probe_interval_seconds"), float, d.probe_interval_seconds, _positive),
        probe_timeout_seconds=r.get(s, (*p, "probe_timeout_seconds"), float, d.probe_timeout_seconds, _positive),
    )


def _redis_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://")):
        return None
    return "must be a redis://host:port/db URL (or null for per-process limits)"


def _workload(r: _Reader, data: Mapping[str, Any]) -> WorkloadSettings:
    p = ("workload",)
    s = r.section(data, p, {"redis", "key_prefix", "lease_seconds", "poll_seconds", "retry_seconds",
                            "redis_timeout_seconds", "admin_groups"})
    d = WorkloadSettings()
    return WorkloadSettings(
        redis=r.get(s, (*p, "redis"), str, None, _redis_url),
        key_prefix=r.get(s, (*p, "key_prefix"), str, d.key_prefix),
        lease_seconds=r.get(s, (*p, "lease_seconds"), float, d.lease_seconds, _positive),
        poll_seconds=r.get(s, (*p, "poll_seconds"), float, d.poll_seconds, _positive),
        retry_seconds=r.get(s, (*p, "retry_seconds"), float, d.retry_seconds, _positive),
        redis_timeout_seconds=r.get(s, (*p, "redis_timeout_seconds"), float, d.redis_timeout_seconds, _positive),
        admin_groups=_strings(r, s, (*p, "admin_groups"), d.admin_groups),
    )


def _bytes(r: _Reader, data: Mapping[str, Any], path: tuple[str, ...], default: int) -> int:
    """A size: a number of bytes, or text like 256MB / 1.5GB (binary units)."""
    value = data.get(path[-1])
    if value is None:
        return default
    size = parse_size(value)
    if size is None:
        r.fail(path, f"must be a size such as 1048576, 64MB or 1GB, not {value!r}")
        return default
    return size


def _limits(r: _Reader, data: Mapping[str, Any]) -> LimitSettings:
    p = ("limits",)
    d = LimitSettings()
    s = r.section(data, p, set(d.__dataclass_fields__))
    return LimitSettings(
        max_statement_bytes=_bytes(r, s, (*p, "max_statement_bytes"), d.max_statement_bytes),
        max_statement_tokens=r.get(s, (*p, "max_statement_tokens"), int, d.max_statement_tokens, _positive),
        max_nesting_depth=r.get(s, (*p, "max_nesting_depth"), int, d.max_nesting_depth, _positive),
        max_boolean_terms=r.get(s, (*p, "max_boolean_terms"), int, d.max_boolean_terms, _positive),
        max_result_bytes=_bytes(r, s, (*p, "max_result_bytes"), d.max_result_bytes),
        planning_threads=r.get(s, (*p, "planning_threads"), int, d.planning_threads, _positive),
        failed_plan_cache_entries=r.get(s, (*p, "failed_plan_cache_entries"), int, d.failed_plan_cache_entries,
                                        _positive),
    )


def _cache(r: _Reader, data: Mapping[str, Any]) -> CacheSettings:
    p = ("cache",)
    s = r.section(data, p, {"enabled", "max_bytes", "max_entry_bytes", "ttl_seconds", "coalesce_stall_seconds",
                            "redis", "redis_prefix", "admin_groups"})
    d = CacheSettings()
    return CacheSettings(
        enabled=r.get(s, (*p, "enabled"), bool, d.enabled),
        max_bytes=_bytes(r, s, (*p, "max_bytes"), d.max_bytes),
        max_entry_bytes=_bytes(r, s, (*p, "max_entry_bytes"), d.max_entry_bytes),
        ttl_seconds=r.get(s, (*p, "ttl_seconds"), float, d.ttl_seconds, _positive),
        coalesce_stall_seconds=r.get(s, (*p, "coalesce_stall_seconds"), float, d.coalesce_stall_seconds,
                                     _positive),
        redis=r.get(s, (*p, "redis"), str, None, _redis_url),
        redis_prefix=r.get(s, (*p, "redis_prefix"), str, d.redis_prefix),
        admin_groups=_strings(r, s, (*p, "admin_groups"), d.admin_groups),
    )


def _webhook_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return None
    return "must be an http:// or https:// URL (or null for no webhook)"


def _cost(r: _Reader, data: Mapping[str, Any]) -> CostSettings:
    p = ("cost",)
    s = r.section(data, p, {"enabled", "webhook_url",
                            "webhook_timeout_seconds", "webhook_attempts", "webhook_backoff_seconds",
                            "finance_groups", "redis", "redis_prefix", "sync_seconds"})
    d = CostSettings()
    return CostSettings(
        enabled=r.get(s, (*p, "enabled"), bool, d.enabled),
        webhook_url=r.get(s, (*p, "webhook_url"), str, None, _webhook_url),
        webhook_timeout_seconds=r.get(s, (*p, "webhook_timeout_seconds"), float, d.webhook_timeout_seconds,
                                      _positive),
        webhook_attempts=r.get(s, (*p, "webhook_attempts"), int, d.webhook_attempts, _positive),
        webhook_backoff_seconds=r.get(s, (*p, "webhook_backoff_seconds"), float, d.webhook_backoff_seconds,
                                      _positive),
        finance_groups=_strings(r, s, (*p, "finance_groups"), d.finance_groups),
        redis=r.get(s, (*p, "redis"), str, None, _redis_url),
        redis_prefix=r.get(s, (*p, "redis_prefix"), str, d.redis_prefix),
        sync_seconds=r.get(s, (*p, "sync_seconds"), float, d.sync_seconds, _positive),
    )


def _environment_name(value: Any) -> str | None:
    return None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) else "must be an environment variable name"


def _masking(r: _Reader, data: Mapping[str, Any]) -> MaskingSettings:
    p = ("masking",)
    s = r.section(data, p, {"key_env", "key_file"})
    d = MaskingSettings()
    return MaskingSettings(
        key_env=r.get(s, (*p, "key_env"), str, None, _environment_name),
        key_file=r.get(s, (*p, "key_file"), Path, r.base / d.key_file),
    )


SECTIONS = {"server", "protocol", "backends", "policies", "identity", "logging", "metadata", "limits", "audit",
            "workload", "cache", "cost", "masking"}


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `path` (optional) and the environment; raise ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    name = str(path) if path is not None else "<defaults>"
    source = _Source(name=name)
    data: dict[str, Any] = _read_yaml(path, source) if path is not None else {}
    base = path.resolve().parent if path is not None else Path.cwd()
    if "backends" not in data:
        data["backends"] = default_backends(base)
    _apply_environment(data, environ, source)
    errors: list[str] = []
    reader = _Reader(source, errors, base)
    for key in data:
        if key not in SECTIONS:
            hint = _closest(key, SECTIONS)
            reader.fail((key,), f"unknown section{f' (did you mean {hint!r}?)' if hint else ''}")
    settings = Settings(
        source=name,
        server=_server(reader, data),
        protocol=_protocol(reader, data),
        backends=_backends(reader, data, base),
        policies=_policies(reader, data),
        identity=_identity(reader, data),
        logging=_logging(reader, data),
        metadata=_metadata(reader, data),
        limits=_limits(reader, data),
        audit=_audit(reader, data),
        workload=_workload(reader, data),
        cache=_cache(reader, data),
        cost=_cost(reader, data),
        masking=_masking(reader, data),
    )
    if errors:
        raise ConfigError(errors)
    return settings
