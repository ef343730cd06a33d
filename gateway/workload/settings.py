"""`workload:` — admission across replicas; the resource groups themselves are in policies/workload.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, masked_repr, positive, read_section, redis_url


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

    CHECKS: ClassVar[Mapping[str, Check]] = {
        "redis": redis_url,
        **{name: positive for name in ("lease_seconds", "poll_seconds", "retry_seconds", "redis_timeout_seconds")},
    }

    def __repr__(self) -> str:
        return masked_repr(self, ("redis",))


def read_workload(r: Reader, data: Mapping[str, Any]) -> WorkloadSettings:
    return read_section(r, data, ("workload",), WorkloadSettings)
