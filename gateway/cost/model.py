"""The cost policy (`policies/cost.yaml`) and the values of the cost ledger. Pure data, no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

UNASSIGNED = "unassigned"  # the cost center of a caller nobody mapped to one
ACTIONS = ("alert", "throttle", "block")
PERIODS = ("daily", "monthly")
SOURCES = ("identity", "groups")  # where a caller's cost center comes from, in `cost_center_from` order


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """How one backend (catalog name) or backend type is priced. Every term is optional (0); a term whose
    figure the backend does not report adds nothing, and the figure is kept as null."""

    per_second: float = 0.0  # x backend execution time (wall clock, the backend's own figure)
    per_cpu_second: float = 0.0  # x CPU seconds (DuckDB: worker thread time; Trino: cpuTime)
    per_gb_scanned: float = 0.0  # x processed bytes / 1e9 (Trino: processedBytes)
    per_million_rows: float = 0.0  # x rows returned / 1e6
    per_credit: float = 0.0  # Snowflake: price of one credit
    credits_per_hour: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # size -> credits
    warehouse_size: str | None = None  # Snowflake: the size when the backend does not report one
    location: str = ""

    def terms(self) -> dict[str, Any]:
        """The rate's non-zero terms, as kept with each charge's figures."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "location"}
        values["credits_per_hour"] = dict(self.credits_per_hour)
        return {k: v for k, v in values.items() if v not in (0.0, None, {})}


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMapping:
    group: str
    cost_center: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    cost_center: str
    period: str  # daily | monthly
    amount: float
    thresholds: tuple[float, ...] = (0.8, 1.0)  # fractions of `amount` that raise an alert when crossed
    action: str = "alert"  # at 100%: alert | throttle | block
    throttle_to: str | None = None  # resource group, for action throttle
    forecast: bool = True  # alert when spend so far, projected over the whole period, exceeds `amount`
    contact: str | None = None  # who can raise it (named in the block message)
    location: str = ""

    @property
    def name(self) -> str:
        return f"{self.cost_center}/{self.period}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CostPolicy:
    rates: Mapping[str, Rate] = field(default_factory=lambda: MappingProxyType({}))  # catalog or type -> rate
    cost_center_from: tuple[str, ...] = SOURCES
    cost_centers: tuple[GroupMapping, ...] = ()  # first mapping whose group the caller has wins
    budgets: tuple[Budget, ...] = ()
    version: str = ""

    def budgets_for(self, cost_center: str) -> tuple[Budget, ...]:
        return tuple(b for b in self.budgets if b.cost_center == cost_center)


NO_COSTS = CostPolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribution:
    """The share of a charge attributed to the owner of one table read (split equally per table)."""

    table_name: str | None  # None: the query read no table (its whole cost is unattributed)
    owner: str | None
    owner_cost_center: str | None
    share: float
    cost: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """One ledger row: a query's cost charged to the consumer's cost center. `event_id` links it to the
    audit record; `figures` holds every input of the price (the backend's figures and the rates used)."""

    event_id: str
    query_id: str | None
    charged_at: str  # the audit record's finished_at
    user_name: str | None
    cost_center: str
    backend: str | None
    statement_type: str | None
    resource_group: str | None
    cache_hit: bool
    cost: float
    figures: Mapping[str, Any]
    tags: Mapping[str, Any]  # source, client_tags, client_info
    attributions: tuple[Attribution, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # Shallow by hand: dataclasses.asdict deep-copies every value, which costs more than the rest of
        # recording a charge (this runs once per query on the event loop).
        data = {name: getattr(self, name) for name in _CHARGE_FIELDS}
        data["figures"] = dict(self.figures)
        data["tags"] = dict(self.tags)
        data["attributions"] = [{name: getattr(a, name) for name in _ATTRIBUTION_FIELDS} for a in self.attributions]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Charge:
        values = dict(data)
        values["attributions"] = tuple(Attribution(**a) for a in values.get("attributions", ()))
        return cls(**values)


_CHARGE_FIELDS = tuple(f.name for f in fields(Charge))
_ATTRIBUTION_FIELDS = tuple(f.name for f in fields(Attribution))


def content_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
