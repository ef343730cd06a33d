"""Reading gateway.yaml: the file, the environment overlay, and the one error format, for every section.

Each package owns its section's settings (a frozen dataclass beside the code that uses them, e.g.
`gateway/cache/settings.py`) and reads it with the `Reader` here, so every section reports problems the same
way: `file:line: key.path: problem`, all of them at once. A plain section needs nothing but its dataclass:
the field's type says how a value is read (bool, int, float, str, Path, a list of strings, `X | None`),
`CHECKS` names a validator per field, `SIZES` the byte sizes written like 256MB. `gateway/config.py`
composes the sections into `Settings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gateway.units import parse_size

T = TypeVar("T")
Check = Callable[[Any], "str | None"]


class ConfigError(Exception):
    """Invalid configuration; `messages` are `file:line: key: problem` lines."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


# ---------------------------------------------------------------------------------------------------------
# The file and the environment, with where each value came from


@dataclass
class Source:
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


def _to_python(node: yaml.Node, path: tuple[str, ...], source: Source) -> Any:
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


def read_yaml(path: Path, source: Source) -> dict[str, Any]:
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


def apply_environment(data: dict[str, Any], environ: Mapping[str, str], source: Source) -> None:
    """`GATEWAY__SECTION__KEY=value` overrides `section.key`; the value is read as YAML."""
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
# Typed values out of a section, collecting every problem instead of stopping at the first

_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


class Reader:
    def __init__(self, source: Source, errors: list[str], base: Path) -> None:
        self.source = source
        self.errors = errors
        self.base = base  # relative paths are relative to this folder (the config file's)

    def fail(self, path: tuple[str, ...], message: str) -> None:
        self.errors.append(f"{self.source.where(path)}: {'.'.join(path)}: {message}")

    def section(self, data: Mapping[str, Any], path: tuple[str, ...], allowed: Iterable[str]) -> Mapping[str, Any]:
        allowed = set(allowed)
        value = data.get(path[-1], {}) if path else data
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                hint = closest(key, allowed)
                self.fail((*path, key), f"unknown key{f' (did you mean {hint!r}?)' if hint else ''}")
        return value

    def get(self, data: Mapping[str, Any], path: tuple[str, ...], kind: type, default: Any,
            check: Check | None = None) -> Any:
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
            return self.path(Path(value).expanduser())
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(path, f"must be {_KIND_NAMES.get(kind, kind.__name__)}, not {value!r}")
            return default
        if check is not None and (problem := check(value)) is not None:
            self.fail(path, problem)
            return default
        return value

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else self.base / value

    def strings(self, data: Mapping[str, Any], path: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
        """A string or a non-empty list of non-empty strings."""
        value = data.get(path[-1])
        if value is None:
            return default
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
            self.fail(path, f"must be a string or a list of strings, not {value!r}")
            return default
        return tuple(items)

    def size(self, data: Mapping[str, Any], path: tuple[str, ...], default: int) -> int:
        """A size: a number of bytes, or text like 256MB / 1.5GB (binary units)."""
        value = data.get(path[-1])
        if value is None:
            return default
        size = parse_size(value)
        if size is None:
            self.fail(path, f"must be a size such as 1048576, 64MB or 1GB, not {value!r}")
            return default
        return size


def closest(key: str, allowed: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, sorted(allowed), n=1)
    return matches[0] if matches else None


# ---------------------------------------------------------------------------------------------------------
# A section read from its dataclass


@functools.cache
def _field_rules(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    """Each init field of `cls` with how it is read (resolving type hints is slow: once per class)."""
    hints = typing.get_type_hints(cls)
    return tuple((f, _field_kind(hints[f.name])) for f in dataclasses.fields(cls) if f.init)


def _field_kind(hint: Any) -> Any:
    """int, float, str, bool, Path, or "strings" for tuple[str, ...]; None for anything else (read by hand)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _field_kind(options[0]) if len(options) == 1 else None
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, Ellipsis):
        return "strings"
    return hint if hint in (int, float, str, bool, Path) else None


def section_keys(cls: type, *, skip: Iterable[str] = (), extra: Iterable[str] = ()) -> set[str]:
    """The keys a section of `cls` accepts: its fields (but `skip`), plus `extra`."""
    return {f.name for f in dataclasses.fields(cls) if f.init} - set(skip) | set(extra)


def read_fields(r: Reader, s: Mapping[str, Any], path: tuple[str, ...], cls: type,
                *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every field of `cls` but `skip`, read from the section `s` (already checked for unknown keys) by its
    type: absent keys take the field's default (a relative Path default is relative to the config file)."""
    checks: Mapping[str, Check] = getattr(cls, "CHECKS", {})
    sizes: frozenset[str] = getattr(cls, "SIZES", frozenset())
    skipped = set(skip)
    values: dict[str, Any] = {}
    for f, kind in _field_rules(cls):
        if f.name in skipped:
            continue
        default: Any = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        key = (*path, f.name)
        if f.name in sizes:
            values[f.name] = r.size(s, key, default)
        elif kind == "strings":
            values[f.name] = r.strings(s, key, default)
        elif kind is None:
            raise TypeError(f"{cls.__name__}.{f.name}: read it by hand (skip=) — no rule for its type {f.type!r}")
        else:
            if kind is Path and isinstance(default, Path):
                default = r.path(default)
            values[f.name] = r.get(s, key, kind, default, checks.get(f.name))
    return values


def read_section(r: Reader, data: Mapping[str, Any], path: tuple[str, ...], cls: type[T]) -> T:
    """A whole section that needs no rule beyond its fields' types and checks."""
    s = r.section(data, path, section_keys(cls))
    return cls(**read_fields(r, s, path, cls))


# ---------------------------------------------------------------------------------------------------------
# Checks shared by several sections


def one_of(choices: tuple[str, ...], what: str) -> Check:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"unknown {what} {value!r} (expected one of: {', '.join(choices)})"

    return check


def positive(value: Any) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {value!r}"


def port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a port number (0-65535), not {value!r}"


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def identifier(value: Any) -> str | None:
    return None if _IDENTIFIER.match(value) else f"must be a lowercase identifier, not {value!r}"


def environment_name(value: Any) -> str | None:
    return None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) else "must be an environment variable name"


def redis_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://")):
        return None
    return "must be a redis://host:port/db URL (or null for per-process limits)"


def postgres_dsn(value: Any) -> str | None:
    if value.startswith(("postgresql://", "postgres://")):
        return None
    return f"must be a postgresql:// URL, not {mask_url(value)!r}"


def mask_url(url: str | None) -> str | None:
    """The URL with its password (user:password@ and ?password=...) replaced by ***."""
    if not url:
        return url
    masked = re.sub(r"(//[^/?#@]*?:)[^@/?#]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", masked, flags=re.IGNORECASE)


def masked_repr(settings: object, secret_fields: Iterable[str]) -> str:
    """`Name(field=value, ...)` with the URLs in `secret_fields` passed through `mask_url`."""
    secret = set(secret_fields)
    fields_ = ", ".join(f"{k}={mask_url(v) if k in secret else v!r}" for k, v in vars(settings).items())
    return f"{type(settings).__name__}({fields_})"
