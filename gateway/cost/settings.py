"""`cost:` — metering, budget alerts and the shared budget counters; rates and budgets are in
policies/cost.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, masked_repr, positive, read_section, redis_url


def _webhook_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return None
    return "must be an http:// or https:// URL (or null for no webhook)"


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

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "webhook_url": _webhook_url, "redis": redis_url,
        **{name: positive for name in ("webhook_timeout_seconds", "webhook_attempts", "webhook_backoff_seconds",
                                       "sync_seconds")},
    }

    def __repr__(self) -> str:
        return masked_repr(self, ("webhook_url", "redis"))


def read_cost(r: Reader, data: Mapping[str, Any]) -> CostSettings:
    return read_section(r, data, ("cost",), CostSettings)
