"""Resource groups as the admin wrote them in `policies/workload.yaml`, as immutable typed values.

Built by `load.py`; read by `select.py` (which group) and the slot pools (how many may run). No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Statement kinds (planner.Plan.statement_kind) -> Trino's query types, as resource-group selectors name them.
QUERY_TYPES: dict[str, str] = {
    "select": "SELECT",
    "execute": "SELECT",
    "explain": "EXPLAIN",
    "show": "DESCRIBE",
    "describe": "DESCRIBE",
}
KNOWN_QUERY_TYPES = frozenset(QUERY_TYPES.values())

MAX_PRIORITY = 1000  # priorities are 0..MAX_PRIORITY (the Redis queue packs them into a score)


@dataclass(frozen=True, slots=True)
class Selector:
    """One `selectors:` entry. Every part that is set must hold; an empty selector matches every query.

    `users`: exact user names (any of). `groups`: any of the caller's groups. `source`: a regular expression
    that must match the whole client source (X-Trino-Source); a query without a source never matches it.
    `client_tags`: every listed tag must be among the client's tags (X-Trino-Client-Tags). `query_types`:
    any of SELECT, EXPLAIN, DESCRIBE.
    """

    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    source: re.Pattern[str] | None = None
    client_tags: frozenset[str] = frozenset()
    query_types: frozenset[str] | None = None
    location: str = ""


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    """A queue with its limits. Times are seconds, sizes bytes; None means no limit."""

    name: str
    priority: int
    max_concurrency: int
    max_queued: int
    selectors: tuple[Selector, ...]
    queue_timeout: float | None = None
    max_execution_time: float | None = None
    max_result_rows: int | None = None
    max_result_bytes: int | None = None  # None: the gateway-wide default (limits.max_result_bytes)
    max_concurrency_per_user: int | None = None
    max_scan_bytes: int | None = None
    cache_ttl: float | None = None  # read by the result cache
    location: str = ""


@dataclass(frozen=True, slots=True)
class WorkloadPolicy:
    """Every resource group in selector order, and the capacity they share (`capacity.max_concurrency`:
    queries running at once over all groups; a free slot goes to the highest-priority waiting query)."""

    groups: tuple[ResourceGroup, ...]
    max_total_concurrency: int | None = None
    version: str = ""

    def group(self, name: str) -> ResourceGroup | None:
        return next((g for g in self.groups if g.name == name), None)


# Without resource groups (no workload.yaml) every query is admitted at once, as in the gateway before
# workload management; queries are still tracked, listed and killable.
UNLIMITED = WorkloadPolicy(
    groups=(ResourceGroup(name="global", priority=0, max_concurrency=1_000_000, max_queued=0,
                          selectors=(Selector(location="<built-in>"),), location="<built-in>"),),
    version="none",
)
