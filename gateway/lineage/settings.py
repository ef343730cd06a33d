"""`lineage:` — OpenLineage run events per executed statement (docs/lineage.md). Off by default."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gateway.config_reader import (
    Check,
    Reader,
    environment_name,
    one_of,
    positive,
    read_fields,
    section_keys,
)

TRANSPORTS = ("console", "file", "http")
# What a job name may be made of: {source}.{statement} groups the runs of one statement from one client
# application into one job, as a scheduler's task groups its runs.
JOB_NAME_FIELDS = ("source", "statement", "user", "catalog", "kind", "query_id")
DEFAULT_PRODUCER = "https://github.com/query-gateway/query-gateway"


def _http_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")) and "@" not in value.split("/")[2]:
        return None
    return "must be an http:// or https:// URL without credentials (put a key in api_key_env)"


def job_name_problem(template: str) -> str | None:
    """Why `template` is not a job name template (None when it is one)."""
    try:
        fields = [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        return f"is not a valid template ({error})"
    unknown = sorted({f for f in fields if f not in JOB_NAME_FIELDS})
    if unknown:
        return f"unknown field(s) {', '.join(unknown)} (expected any of: {', '.join(JOB_NAME_FIELDS)})"
    if not fields and not template.strip():
        return "must not be empty"
    return None


@dataclass(frozen=True, kw_only=True)
class LineageSettings:
    """OpenLineage events (gateway/lineage/): where they go and how they are named."""

    enabled: bool = False
    transport: str = "console"  # console (the gateway.lineage log) | file (JSON lines) | http
    url: str | None = None  # http: the lineage server (Marquez: http://marquez:5000)
    endpoint: str = "api/v1/lineage"  # http: the path events are POSTed to
    timeout_seconds: float = 5.0  # http: one POST
    retries: int = 2  # http: further tries of one event (connection errors, 5xx), from the background sender
    api_key_env: str | None = None  # http: the variable holding a bearer key (its name, never its value)
    file: Path | None = None  # file: events appended one JSON object per line
    namespace: str = "query-gateway"  # the job namespace (this gateway deployment)
    job_name: str = "{source}.{statement}"  # fields: source, statement (hash), user, catalog, kind, query_id
    producer: str = DEFAULT_PRODUCER  # the events' producer URI
    queue_size: int = 10_000  # events waiting for the sender; beyond it they are dropped and counted
    redact_literals: bool = True  # the SQL facet's literals become ?
    column_lineage: bool = True
    column_lineage_max_sql_bytes: int = 64 * 1024  # longer statements get no column-level lineage facet
    # The sender's CPU (it shares the interpreter with queries): after each run it rests so that its work
    # stays under this share of one core's time; beyond that the queue fills and events are dropped.
    sender_cpu_share: float = 0.2
    statement_cache_entries: int = 1024  # repeated statements reuse their column lineage and SQL facet

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "transport": one_of(TRANSPORTS, "lineage transport"), "url": _http_url, "api_key_env": environment_name,
        "job_name": job_name_problem, "timeout_seconds": positive, "queue_size": positive,
        "retries": lambda v: None if v >= 0 else f"must be 0 or more, not {v!r}",
        "sender_cpu_share": lambda v: None if 0 < v <= 1 else f"must be above 0 and at most 1, not {v!r}",
        "statement_cache_entries": positive,
    }
    SIZES: ClassVar[frozenset[str]] = frozenset({"column_lineage_max_sql_bytes"})


def read_lineage(r: Reader, data: Mapping[str, Any]) -> LineageSettings:
    p = ("lineage",)
    s = r.section(data, p, section_keys(LineageSettings))
    values = read_fields(r, s, p, LineageSettings)
    settings = LineageSettings(**values)
    if settings.enabled and settings.transport == "http" and settings.url is None:
        r.fail((*p, "url"), "is required with transport: http")
    if settings.enabled and settings.transport == "file" and settings.file is None:
        r.fail((*p, "file"), "is required with transport: file")
    return settings
