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
    shipped: bool = False  # `dir` is the example set inside the package (no policies.dir, no ./policies)


def read_policies(r: Reader, data: Mapping[str, Any]) -> PolicySettings:
    p = ("policies",)
    s = r.section(data, p, section_keys(PolicySettings, skip=("shipped",)))
    default = r.base / "policies"
    shipped = s.get("dir") is None and not default.is_dir()
    return PolicySettings(
        dir=EXAMPLE_POLICIES if shipped else r.get(s, (*p, "dir"), Path, default),
        reload_seconds=r.get(s, (*p, "reload_seconds"), float, 2.0, positive),
        shipped=shipped,
    )
