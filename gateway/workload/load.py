"""`policies/workload.yaml` -> `WorkloadPolicy`, with every mistake reported as `file:line: message`.

The policies directory is shared with the table policies (which skip these sections by name, see
`gateway.policy.load.FOREIGN_SECTIONS`). Conventionally the sections live in `workload.yaml`; any one file of
the directory may hold them, never two. No `resource_groups` anywhere means no limits (`model.UNLIMITED`).

    capacity: {max_concurrency: 8}           # optional: running at once over all groups
    resource_groups:                          # first group with a matching selector takes the query
      - name: dashboards                      # letters, digits, _ . -
        priority: 10                          # 0..1000, higher is admitted first (default 0)
        max_concurrency: 8                    # required: running at once (all replicas, with workload.redis)
        max_queued: 200                       # required: waiting at once; beyond: QUERY_QUEUE_FULL
        queue_timeout: 30s                    # durations: 500ms, 30s, 2m, 1h, or a number of seconds
        max_execution_time: 60s
        max_result_rows: 100000
        max_result_bytes: 256MB               # JSON bytes of one result (default: gateway.yaml limits.max_result_bytes)
        max_concurrency_per_user: 2
        max_scan_bytes: 10GB                  # sizes: B, KB, MB, GB, TB (powers of 1024) or a number of bytes
        cache_ttl: 5m
        selectors: [{groups: [bi]}, {source: "superset.*"}, {client_tags: [report]}, {query_type: SELECT}]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import yaml

from gateway.policy.load import NodeReader, collect_sections, read_policy_texts
from gateway.units import parse_duration, parse_size
from gateway.workload.model import (
    KNOWN_QUERY_TYPES,
    MAX_PRIORITY,
    UNLIMITED,
    ResourceGroup,
    Selector,
    WorkloadPolicy,
)

SECTIONS = ("resource_groups", "capacity")

T = TypeVar("T")

_GROUP_KEYS = {"name", "priority", "max_concurrency", "max_queued", "queue_timeout", "max_execution_time",
               "max_result_rows", "max_result_bytes", "max_concurrency_per_user", "max_scan_bytes", "cache_ttl",
               "selectors"}
_SELECTOR_KEYS = {"user", "groups", "source", "client_tags", "query_type"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def load_workload(directory: Path) -> WorkloadPolicy:
    """The workload sections of the `*.yaml` files in `directory` (PolicyError lists every problem)."""
    return parse_workload(read_policy_texts(directory) if directory.is_dir() else {})


def parse_workload(texts: Mapping[str, str]) -> WorkloadPolicy:
    """The pure half of `load_workload`: file name -> YAML text."""
    sections = collect_sections(texts, SECTIONS)
    found = sections.found
    policy = UNLIMITED
    if "resource_groups" in found:
        reader, node = found["resource_groups"]
        policy = WorkloadPolicy(groups=tuple(_groups(reader, node)), max_total_concurrency=_capacity(found),
                                version=sections.version)
    elif "capacity" in found:
        reader, node = found["capacity"]
        reader.error(node, "capacity without resource_groups")
    sections.raise_errors()
    return policy


def _capacity(found: Mapping[str, tuple[NodeReader, yaml.Node]]) -> int | None:
    if "capacity" not in found:
        return None
    reader, node = found["capacity"]
    fields = reader.mapping(node, "capacity", {"max_concurrency"}, required={"max_concurrency"})
    if not fields or "max_concurrency" not in fields:
        return None
    return _integer(reader, fields["max_concurrency"], "max_concurrency", minimum=1)


def _groups(reader: NodeReader, node: yaml.Node) -> list[ResourceGroup]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        reader.error(node, "resource_groups must be a non-empty list of groups")
        return []
    groups: list[ResourceGroup] = []
    names: dict[str, str] = {}
    for item in node.value:
        group = _group(reader, item)
        if group is None:
            continue
        if group.name in names:
            reader.error(item, f"duplicate resource group {group.name!r} (first at {names[group.name]})")
            continue
        names[group.name] = group.location
        groups.append(group)
    return groups


def _group(reader: NodeReader, node: yaml.Node) -> ResourceGroup | None:
    fields = reader.mapping(node, "resource group", _GROUP_KEYS,
                            required={"name", "max_concurrency", "max_queued", "selectors"})
    if fields is None or not {"name", "max_concurrency", "max_queued", "selectors"} <= fields.keys():
        return None
    name = reader.string(fields["name"], "name")
    if name is not None and not _NAME.match(name):
        reader.error(fields["name"], f"group name {name!r} may hold only letters, digits, '_', '.' and '-'")
    concurrency = _integer(reader, fields["max_concurrency"], "max_concurrency", minimum=1)
    queued = _integer(reader, fields["max_queued"], "max_queued", minimum=0)
    priority = _integer(reader, fields["priority"], "priority", minimum=0, maximum=MAX_PRIORITY) \
        if "priority" in fields else 0
    per_user = _optional(fields, "max_concurrency_per_user", lambda n: _integer(reader, n, "max_concurrency_per_user",
                                                                                 minimum=1))
    if per_user is not None and concurrency is not None and per_user > concurrency:
        reader.error(fields["max_concurrency_per_user"], "max_concurrency_per_user is larger than max_concurrency")
    selectors = _selectors(reader, fields["selectors"])
    queue_timeout = _optional(fields, "queue_timeout", lambda n: _duration(reader, n, "queue_timeout"))
    execution_time = _optional(fields, "max_execution_time", lambda n: _duration(reader, n, "max_execution_time"))
    result_rows = _optional(fields, "max_result_rows", lambda n: _integer(reader, n, "max_result_rows", minimum=1))
    scan_bytes = _optional(fields, "max_scan_bytes", lambda n: _size(reader, n, "max_scan_bytes"))
    result_bytes = _optional(fields, "max_result_bytes", lambda n: _size(reader, n, "max_result_bytes"))
    cache_ttl = _optional(fields, "cache_ttl", lambda n: _duration(reader, n, "cache_ttl"))
    if name is None or concurrency is None or queued is None or priority is None:
        return None
    return ResourceGroup(name=name, priority=priority, max_concurrency=concurrency, max_queued=queued,
                         selectors=selectors, queue_timeout=queue_timeout, max_execution_time=execution_time,
                         max_result_rows=result_rows, max_result_bytes=result_bytes,
                         max_concurrency_per_user=per_user, max_scan_bytes=scan_bytes,
                         cache_ttl=cache_ttl, location=reader.location(node))


def _selectors(reader: NodeReader, node: yaml.Node) -> tuple[Selector, ...]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        reader.error(node, "selectors must be a non-empty list ([{}] matches every query)")
        return ()
    selectors = []
    for item in node.value:
        fields = reader.mapping(item, "selector", _SELECTOR_KEYS)
        if fields is None:
            continue
        users = reader.strings(fields["user"], "user") if "user" in fields else None
        groups = reader.strings(fields["groups"], "groups") if "groups" in fields else None
        tags = reader.strings(fields["client_tags"], "client_tags") if "client_tags" in fields else None
        types = reader.strings(fields["query_type"], "query_type") if "query_type" in fields else None
        if types is not None:
            types = [t.upper() for t in types]
            for unknown in sorted(set(types) - KNOWN_QUERY_TYPES):
                reader.error(fields["query_type"], f"unknown query_type {unknown!r} "
                                                   f"(expected one of: {', '.join(sorted(KNOWN_QUERY_TYPES))})")
        source = None
        if "source" in fields and (text := reader.string(fields["source"], "source")) is not None:
            try:
                source = re.compile(text)
            except re.error as exc:
                reader.error(fields["source"], f"source is not a valid regular expression: {exc}")
        if any(v is not None and not v for v in (users, groups, types)):
            reader.error(item, "an empty list in a selector would match nobody; leave the key out instead")
        selectors.append(Selector(
            users=None if users is None else frozenset(users),
            groups=None if groups is None else frozenset(groups),
            source=source,
            client_tags=frozenset(tags or ()),
            query_types=None if types is None else frozenset(types),
            location=reader.location(item),
        ))
    return tuple(selectors)


def _optional(fields: dict[str, yaml.Node], key: str, read: Callable[[yaml.Node], T | None]) -> T | None:
    if key not in fields or _is_null(fields[key]):
        return None
    return read(fields[key])


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _scalar(node: yaml.Node) -> object:
    return yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None


def _integer(reader: NodeReader, node: yaml.Node, what: str, *, minimum: int,
             maximum: int | None = None) -> int | None:
    value = _scalar(node)
    if not isinstance(value, int) or isinstance(value, bool):
        reader.error(node, f"{what} must be an integer")
        return None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        reader.error(node, f"{what} must be at least {minimum}{upper}, not {value}")
        return None
    return value


def _duration(reader: NodeReader, node: yaml.Node, what: str) -> float | None:
    seconds = parse_duration(_scalar(node))
    if seconds is None:
        reader.error(node, f"{what} must be a positive duration like 500ms, 30s, 2m, 1h")
    return seconds


def _size(reader: NodeReader, node: yaml.Node, what: str) -> int | None:
    size = parse_size(_scalar(node))
    if size is None:
        reader.error(node, f"{what} must be a positive size like 512MB, 10GB or a number of bytes")
    return size

