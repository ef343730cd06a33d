"""`cache:` — the result cache's bounds, lifetime and shared tier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.config_reader import Check, Reader, masked_repr, positive, read_section, redis_url


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

    CHECKS: ClassVar[Mapping[str, Check]] = {"ttl_seconds": positive, "coalesce_stall_seconds": positive,
                                             "redis": redis_url}
    SIZES: ClassVar[frozenset[str]] = frozenset({"max_bytes", "max_entry_bytes"})

    def __repr__(self) -> str:
        return masked_repr(self, ("redis",))


def read_cache(r: Reader, data: Mapping[str, Any]) -> CacheSettings:
    return read_section(r, data, ("cache",), CacheSettings)
