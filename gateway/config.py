"""gateway.yaml -> typed settings. The one place that knows every key and its default.

Every key is optional; no file at all gives the embedded demo. Any key can be overridden by an environment
variable `GATEWAY__SECTION__KEY` (`GATEWAY__SERVER__PORT=8181`, `GATEWAY__BACKENDS__DEMO__PATH=/d.duckdb`);
its value is read as YAML, so numbers and booleans keep their type. Relative paths are relative to the config
file's folder (or to the working directory when there is no file). Errors name the file, line and key:

    gateway.yaml:12: backends.demo.type: unknown backend 'duckbd' (expected one of: duckdb)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BACKEND_TYPES = ("duckdb",)
IDENTITY_MODES = ("dev",)
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


@dataclass(frozen=True, kw_only=True)
class ProtocolSettings:
    page_rows: int = 4096  # at most this many rows per response
    page_bytes: int = 1024 * 1024  # and about this many bytes of JSON
    max_wait_seconds: float = 1.0  # how long one poll waits for new rows before answering RUNNING
    client_timeout_seconds: float = 300.0  # a query nobody polls for this long is cancelled (Trino: 5m)


@dataclass(frozen=True, kw_only=True)
class BackendSettings:
    name: str
    type: str
    path: Path | None = None
    schema: str = "main"
    tpch_scale: float | None = None  # generate TPC-H into `schema` at first start when the file is missing
    threads: int | None = None


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    dir: Path = Path("policies")
    reload_seconds: float = 2.0  # how often the directory is checked for changed files


@dataclass(frozen=True, kw_only=True)
class IdentitySettings:
    mode: str = "dev"
    dev_users_file: Path | None = None  # default: dev_users.yaml in the policies directory, if present
    allow_dev_on_public_host: bool = False


@dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True, kw_only=True)
class MetadataSettings:
    refresh_seconds: float = 60.0


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


def _server(r: _Reader, data: Mapping[str, Any]) -> ServerSettings:
    p = ("server",)
    s = r.section(data, p, {"host", "port", "environment", "max_request_bytes", "shutdown_grace_seconds"})
    d = ServerSettings()
    return ServerSettings(
        host=r.get(s, (*p, "host"), str, d.host),
        port=r.get(s, (*p, "port"), int, d.port, _port),
        environment=r.get(s, (*p, "environment"), str, d.environment),
        max_request_bytes=r.get(s, (*p, "max_request_bytes"), int, d.max_request_bytes, _positive),
        shutdown_grace_seconds=r.get(s, (*p, "shutdown_grace_seconds"), float, d.shutdown_grace_seconds),
    )


def _protocol(r: _Reader, data: Mapping[str, Any]) -> ProtocolSettings:
    p = ("protocol",)
    s = r.section(data, p, {"page_rows", "page_bytes", "max_wait_seconds", "client_timeout_seconds"})
    d = ProtocolSettings()
    return ProtocolSettings(
        page_rows=r.get(s, (*p, "page_rows"), int, d.page_rows, _positive),
        page_bytes=r.get(s, (*p, "page_bytes"), int, d.page_bytes, _positive),
        max_wait_seconds=r.get(s, (*p, "max_wait_seconds"), float, d.max_wait_seconds, _positive),
        client_timeout_seconds=r.get(s, (*p, "client_timeout_seconds"), float, d.client_timeout_seconds,
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
        s = r.section(raw, p, {"type", "path", "schema", "tpch_scale", "threads"})
        kind = r.get(s, (*p, "type"), str, None, _one_of(BACKEND_TYPES, "backend"))
        if kind is None:
            if "type" not in s:
                r.fail((*p, "type"), "is required")
            continue
        path = r.get(s, (*p, "path"), Path, None)
        if kind == "duckdb" and path is None:
            r.fail((*p, "path"), "is required for a duckdb backend")
        result.append(BackendSettings(
            name=name,
            type=kind,
            path=path,
            schema=r.get(s, (*p, "schema"), str, "main", _identifier),
            tpch_scale=r.get(s, (*p, "tpch_scale"), float, None, _positive),
            threads=r.get(s, (*p, "threads"), int, None, _positive),
        ))
    return tuple(result)


def _policies(r: _Reader, data: Mapping[str, Any]) -> PolicySettings:
    p = ("policies",)
    s = r.section(data, p, {"dir", "reload_seconds"})
    return PolicySettings(
        dir=r.get(s, (*p, "dir"), Path, r.base / "policies"),
        reload_seconds=r.get(s, (*p, "reload_seconds"), float, 2.0, _positive),
    )


def _identity(r: _Reader, data: Mapping[str, Any]) -> IdentitySettings:
    p = ("identity",)
    s = r.section(data, p, {"mode", "dev_users_file", "allow_dev_on_public_host"})
    d = IdentitySettings()
    return IdentitySettings(
        mode=r.get(s, (*p, "mode"), str, d.mode, _one_of(IDENTITY_MODES, "identity mode")),
        dev_users_file=r.get(s, (*p, "dev_users_file"), Path, None),
        allow_dev_on_public_host=r.get(s, (*p, "allow_dev_on_public_host"), bool, False),
    )


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


SECTIONS = {"server", "protocol", "backends", "policies", "identity", "logging", "metadata"}


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
    )
    if errors:
        raise ConfigError(errors)
    return settings
