"""Metering: a finished query and its backend's own figures -> a `Charge` for the ledger. No I/O.

    price(rate, stats)          cost and the figures it was computed from (rates included): recomputable
    consumer_cost_center(...)   identity claim / dev users file, or the `cost_centers` group mapping
    attribute(cost, tables)     split equally over the tables read, to each table's owner and cost center

The price of a query is the sum of the rate's terms over the figures the backend reported:

    per_second x elapsed_seconds + per_cpu_second x cpu_seconds + per_gb_scanned x processed_bytes / 1e9
    + per_million_rows x rows / 1e6 + per_credit x credits

where `processed_bytes` is `ExecutionStats.extra["processed_bytes"]` (Trino's processedBytes), else
`ExecutionStats.bytes` when the backend reports it (> 0), else unreported; and `credits` (Snowflake) is
`extra["credits"]` when the backend reports them, else elapsed hours x `credits_per_hour` of the warehouse size
(`extra["warehouse_size"]`, else the rate's `warehouse_size`). A cache hit costs 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.audit.record import AuditRecord
from gateway.cost.model import UNASSIGNED, Attribution, Charge, CostPolicy, Rate
from gateway.identity import Identity
from gateway.policy.decide import equally_specific
from gateway.policy.model import PolicySet
from gateway.relations import ExecutionStats


def price(rate: Rate | None, stats: ExecutionStats) -> tuple[float, dict[str, Any]]:
    processed = stats.extra.get("processed_bytes")
    if processed is None and stats.bytes > 0:
        processed = stats.bytes
    figures: dict[str, Any] = {
        "elapsed_seconds": round(stats.elapsed_seconds, 6),
        "cpu_seconds": round(stats.cpu_seconds, 6),
        "rows": stats.rows,
        "processed_bytes": processed,
    }
    if rate is None:
        figures["rates"] = None
        return 0.0, figures
    cost = (rate.per_second * stats.elapsed_seconds + rate.per_cpu_second * stats.cpu_seconds
            + rate.per_million_rows * stats.rows / 1e6)
    if processed is not None:
        cost += rate.per_gb_scanned * float(processed) / 1e9
    if rate.per_credit:
        credits = stats.extra.get("credits")
        size = stats.extra.get("warehouse_size") or rate.warehouse_size
        if credits is None and size is not None and str(size).upper() in rate.credits_per_hour:
            credits = stats.elapsed_seconds / 3600 * rate.credits_per_hour[str(size).upper()]
        figures["warehouse_size"] = size
        figures["credits"] = credits
        if credits is not None:
            cost += rate.per_credit * float(credits)
    figures["rates"] = rate.terms()
    return cost, figures


def consumer_cost_center(identity: Identity, policy: CostPolicy) -> str:
    for source in policy.cost_center_from:
        if source == "identity" and identity.cost_center:
            return identity.cost_center
        if source == "groups":
            for mapping in policy.cost_centers:
                if mapping.group in identity.groups:
                    return mapping.cost_center
    return UNASSIGNED


Owner = tuple[str | None, str | None]  # a table's (owner, owner cost center)


def table_owner(policy: PolicySet, table: str) -> Owner:
    """From the table's policy entry; none when no single entry is the most specific."""
    entries = equally_specific(policy, table.lower())
    entry = entries[0] if len(entries) == 1 else None
    return (entry.owner, entry.cost_center) if entry else (None, None)


def attribute(cost: float, tables: Sequence[str], policy: PolicySet,
              owner: Callable[[PolicySet, str], Owner] = table_owner) -> tuple[Attribution, ...]:
    """Equal shares per table read; a table without a (single) policy entry has no owner."""
    if not tables:
        return (Attribution(table_name=None, owner=None, owner_cost_center=None, share=1.0, cost=cost),)
    share = 1.0 / len(tables)
    result = []
    for table in tables:
        name, cost_center = owner(policy, table)
        result.append(Attribution(table_name=table, owner=name, owner_cost_center=cost_center, share=share,
                                  cost=cost * share))
    return tuple(result)


class Meter:
    """Prices finished queries with the policies in force (snapshots, no I/O) and reports each charge to
    `on_charge` (the budget counters)."""

    def __init__(self, *, costs: Callable[[], CostPolicy], tables: Callable[[], PolicySet],
                 backend_types: Mapping[str, str], on_charge: Callable[[Charge], None] | None = None) -> None:
        self._costs = costs
        self._tables = tables
        self._types = dict(backend_types)  # catalog name -> backend type
        self.on_charge = on_charge
        # Each table's owner under one policy version (ranking the entries is most of a charge's work)
        self._owners: tuple[str, dict[str, Owner]] = ("", {})

    def cost_center_of(self, identity: Identity) -> str:
        """The cost center `identity`'s queries are charged to, under the cost policy in force."""
        return consumer_cost_center(identity, self._costs())

    def rate_for(self, catalog: str | None, policy: CostPolicy) -> Rate | None:
        if catalog is None:
            return None
        return policy.rates.get(catalog) or policy.rates.get(self._types.get(catalog, ""))

    def charge(self, record: AuditRecord, *, identity: Identity, stats: ExecutionStats, catalog: str | None,
               cache_hit: bool, client_info: str | None) -> Charge:
        policy = self._costs()
        figures: dict[str, Any]
        if cache_hit:
            cost, figures = 0.0, {"cache_hit": True}
        else:
            cost, figures = price(self.rate_for(catalog, policy), stats)
            figures["rate_key"] = catalog if catalog in policy.rates else self._types.get(catalog or "")
        figures["cost_policy_version"] = policy.version[:12] or None
        return Charge(
            event_id=record.event_id, query_id=record.query_id, charged_at=record.finished_at,
            user_name=record.user_name, cost_center=consumer_cost_center(identity, policy), backend=catalog,
            statement_type=record.statement_type, resource_group=record.resource_group, cache_hit=cache_hit,
            cost=cost, figures=figures,
            tags={"source": record.source, "client_tags": list(record.client_tags), "client_info": client_info},
            attributions=attribute(cost, record.tables_read, self._tables(), self._owner))

    def _owner(self, policy: PolicySet, table: str) -> Owner:
        version, owners = self._owners
        if version != policy.version:
            owners = {}
            self._owners = (policy.version, owners)
        if table not in owners:
            if len(owners) >= _OWNERS_KEPT:
                owners.clear()
            owners[table] = table_owner(policy, table)
        return owners[table]


_OWNERS_KEPT = 10_000  # tables; past that the memo starts again (a catalog this large is rare)
