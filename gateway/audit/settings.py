"""`audit:` — the audit trail's store, what happens while it is down, and how records are batched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, masked_repr, one_of, positive, read_fields, section_keys

AUDIT_FAILURE_MODES = ("spool", "deny")


def _store_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return None
    return "must be sqlite:///path/to/audit.db or postgresql://user@host:port/database"


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

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "store": _store_url, "admin_store": _store_url, "on_failure": one_of(AUDIT_FAILURE_MODES, "on_failure"),
        **{name: positive for name in ("spool_max_bytes", "batch_size", "flush_interval_seconds",
                                       "checkpoint_records", "checkpoint_seconds", "retention_days",
                                       "store_timeout_seconds", "probe_interval_seconds", "probe_timeout_seconds")},
    }

    def __repr__(self) -> str:
        return masked_repr(self, ("store", "admin_store"))


def read_audit(r: Reader, data: Mapping[str, Any]) -> AuditSettings:
    p = ("audit",)
    s = r.section(data, p, section_keys(AuditSettings))
    values = read_fields(r, s, p, AuditSettings)
    store: str = values["store"]
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///"):]).is_absolute():
        values["store"] = f"sqlite:///{r.base / store[len('sqlite:///'):]}"  # relative to the config file
    if values["admin_store"] is not None and not store.startswith("postgres"):
        r.fail((*p, "admin_store"), "is only used with a postgresql:// store")
    return AuditSettings(**values)
