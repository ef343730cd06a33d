"""`policies:` — where the policy files are and how often they are checked for changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config_reader import Reader, positive, section_keys
from gateway.examples import EXAMPLE_POLICIES


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    dir: Path = Path("policies")
    reload_seconds: float = 2.0  # how often the directory is checked for changed files
    canary_interval_seconds: float = 300.0  # how often canaries.yaml runs against the policy in force; 0: never
    canary_timeout_seconds: float = 30.0  # each probe; a probe not done by then fails
    canary_max_rows: int = 10_000  # rows a probe may return (it fails beyond, never checked on a part)
    shipped: bool = False  # `dir` is the example set inside the package (no policies.dir, no ./policies)


def read_policies(r: Reader, data: Mapping[str, Any]) -> PolicySettings:
    p = ("policies",)
    s = r.section(data, p, section_keys(PolicySettings, skip=("shipped",)))
    default = r.base / "policies"
    shipped = s.get("dir") is None and not default.is_dir()
    return PolicySettings(
        dir=EXAMPLE_POLICIES if shipped else r.get(s, (*p, "dir"), Path, default),
        reload_seconds=r.get(s, (*p, "reload_seconds"), float, 2.0, positive),
        canary_interval_seconds=r.get(s, (*p, "canary_interval_seconds"), float, 300.0, _not_negative),
        canary_timeout_seconds=r.get(s, (*p, "canary_timeout_seconds"), float, 30.0, positive),
        canary_max_rows=r.get(s, (*p, "canary_max_rows"), int, 10_000, positive),
        shipped=shipped,
    )


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be 0 (off) or more, not {value!r}"
