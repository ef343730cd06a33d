"""`policies/cost.yaml` -> `CostPolicy`, with every mistake reported as `file:line: message`.

The sections live in one file of the policies directory (conventionally `cost.yaml`); the table-policy loader
skips them by name (`gateway.policy.load.FOREIGN_SECTIONS`). No cost sections anywhere: nothing is priced
(every charge is 0) and no budget applies.

    rates:                                  # backend catalog name, or backend type (duckdb, postgres, sqlite,
      duckdb:                               # trino, snowflake); a catalog name beats a type
        per_second: 0.0005                  # x backend execution time in seconds
        per_cpu_second: 0.0002              # x CPU seconds the backend reports
        per_gb_scanned: 0.0                 # x processed bytes / 1e9 (Trino processedBytes)
        per_million_rows: 0.01              # x rows returned / 1e6
      snowflake: {per_credit: 3.0, credits_per_hour: {XSMALL: 1, SMALL: 2}, warehouse_size: XSMALL}
    cost_center_from: [identity, groups]    # where a caller's cost center comes from, first hit wins
    cost_centers:                           # group -> cost center (source `groups`); first listed match wins
      - {group: finance, cost_center: CC-7000}
    budgets:
      - cost_center: CC-2001
        period: monthly                     # daily | monthly (UTC calendar day / month)
        amount: 50                          # in the currency the rates are in
        thresholds: [80%, 100%]             # alert once per period when spend crosses each
        action: throttle                    # at 100%: alert | throttle | block
        throttle_to: throttled              # resource group (policies/workload.yaml), action throttle only
        forecast: true                      # alert when the projected period spend exceeds the amount
        contact: finance@example.com        # named in the block message
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import yaml

from gateway.cost.model import ACTIONS, NO_COSTS, PERIODS, SOURCES, Budget, CostPolicy, GroupMapping, Rate
from gateway.policy.load import NodeReader, collect_sections, read_policy_texts
from gateway.workload.load import _scalar

SECTIONS = ("rates", "cost_center_from", "cost_centers", "budgets")

_RATE_KEYS = {"per_second", "per_cpu_second", "per_gb_scanned", "per_million_rows", "per_credit",
              "credits_per_hour", "warehouse_size"}
_BUDGET_KEYS = {"cost_center", "period", "amount", "thresholds", "action", "throttle_to", "forecast", "contact"}


def load_costs(directory: Path) -> CostPolicy:
    return parse_costs(read_policy_texts(directory) if directory.is_dir() else {})


def parse_costs(texts: Mapping[str, str]) -> CostPolicy:
    """The pure half of `load_costs`: file name -> YAML text."""
    sections = collect_sections(texts, SECTIONS)
    found = sections.found
    policy = NO_COSTS
    if found:
        policy = CostPolicy(rates=_rates(found), cost_center_from=_sources(found), cost_centers=_mappings(found),
                            budgets=_budgets(found), version=sections.version)
    sections.raise_errors()
    return policy


def _number(reader: NodeReader, node: yaml.Node, what: str, *, positive: bool = False) -> float | None:
    value = _scalar(node)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or (positive and value == 0):
        reader.error(node, f"{what} must be a {'positive' if positive else 'non-negative'} number")
        return None
    return float(value)


def _rates(found: Mapping[str, tuple[NodeReader, yaml.Node]]) -> Mapping[str, Rate]:
    if "rates" not in found:
        return MappingProxyType({})
    reader, node = found["rates"]
    rates: dict[str, Rate] = {}
    for name, item in reader.mapping_of(node, "rates").items():
        fields = reader.mapping(item, f"rates of {name!r}", _RATE_KEYS)
        if fields is None:
            continue
        numbers = {key: _number(reader, fields[key], key) or 0.0 for key in
                   ("per_second", "per_cpu_second", "per_gb_scanned", "per_million_rows", "per_credit")
                   if key in fields}
        sizes: dict[str, float] = {}
        if "credits_per_hour" in fields:
            for size, value in reader.mapping_of(fields["credits_per_hour"], "credits_per_hour").items():
                sizes[size.upper()] = _number(reader, value, f"credits_per_hour of {size}") or 0.0
        size_name = reader.string(fields["warehouse_size"], "warehouse_size") if "warehouse_size" in fields else None
        if size_name is not None and size_name.upper() not in sizes:
            reader.error(fields["warehouse_size"], f"warehouse_size {size_name!r} is not in credits_per_hour")
        if numbers.get("per_credit") and not sizes:
            reader.error(item, "per_credit needs credits_per_hour (credits per hour of each warehouse size)")
        rates[name] = Rate(**numbers, credits_per_hour=MappingProxyType(sizes),
                           warehouse_size=size_name.upper() if size_name else None, location=reader.location(item))
    return MappingProxyType(rates)


def _sources(found: Mapping[str, tuple[NodeReader, yaml.Node]]) -> tuple[str, ...]:
    if "cost_center_from" not in found:
        return SOURCES
    reader, node = found["cost_center_from"]
    sources = reader.strings(node, "cost_center_from") or []
    for source in sources:
        if source not in SOURCES:
            reader.error(node, f"unknown cost_center_from {source!r} (expected: {', '.join(SOURCES)})")
    return tuple(s for s in sources if s in SOURCES)


def _mappings(found: Mapping[str, tuple[NodeReader, yaml.Node]]) -> tuple[GroupMapping, ...]:
    if "cost_centers" not in found:
        return ()
    reader, node = found["cost_centers"]
    mappings = []
    for item in reader.sequence(node, "cost_centers"):
        fields = reader.mapping(item, "cost center mapping", {"group", "cost_center"},
                                required={"group", "cost_center"})
        if fields is None or len(fields) != 2:
            continue
        group, center = reader.string(fields["group"], "group"), reader.string(fields["cost_center"], "cost_center")
        if group is not None and center is not None:
            mappings.append(GroupMapping(group=group, cost_center=center))
    return tuple(mappings)


def _budgets(found: Mapping[str, tuple[NodeReader, yaml.Node]]) -> tuple[Budget, ...]:
    if "budgets" not in found:
        return ()
    reader, node = found["budgets"]
    budgets: list[Budget] = []
    seen: dict[tuple[str, str], str] = {}
    for item in reader.sequence(node, "budgets"):
        budget = _budget(reader, item)
        if budget is None:
            continue
        key = (budget.cost_center, budget.period)
        if key in seen:
            reader.error(item, f"duplicate {budget.period} budget for {budget.cost_center} (first at {seen[key]})")
            continue
        seen[key] = budget.location
        budgets.append(budget)
    return tuple(budgets)


def _budget(reader: NodeReader, node: yaml.Node) -> Budget | None:
    fields = reader.mapping(node, "budget", _BUDGET_KEYS, required={"cost_center", "period", "amount"})
    if fields is None or not {"cost_center", "period", "amount"} <= fields.keys():
        return None
    center = reader.string(fields["cost_center"], "cost_center")
    period = reader.string(fields["period"], "period")
    if period is not None and period not in PERIODS:
        reader.error(fields["period"], f"period must be one of {', '.join(PERIODS)}, not {period!r}")
        period = None
    amount = _number(reader, fields["amount"], "amount", positive=True)
    thresholds: tuple[float, ...] = (0.8, 1.0)
    if "thresholds" in fields:
        thresholds = tuple(sorted(t for t in (_threshold(reader, n) for n in reader.sequence(fields["thresholds"],
                                                                                         "thresholds"))
                                  if t is not None))
    action = reader.string(fields["action"], "action") if "action" in fields else "alert"
    if action is not None and action not in ACTIONS:
        reader.error(fields["action"], f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        action = None
    throttle_to = reader.string(fields["throttle_to"], "throttle_to") if "throttle_to" in fields else None
    if action == "throttle" and throttle_to is None:
        reader.error(node, "action throttle needs throttle_to: the resource group to demote queries to")
    if throttle_to is not None and action != "throttle":
        reader.error(fields["throttle_to"], "throttle_to applies to action throttle only")
    forecast = reader.boolean(fields["forecast"], "forecast") if "forecast" in fields else True
    contact = reader.string(fields["contact"], "contact") if "contact" in fields else None
    if center is None or period is None or amount is None or action is None or forecast is None:
        return None
    return Budget(cost_center=center, period=period, amount=amount, thresholds=thresholds, action=action,
                  throttle_to=throttle_to, forecast=forecast, contact=contact, location=reader.location(node))


def _threshold(reader: NodeReader, node: yaml.Node) -> float | None:
    value = _scalar(node)
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100
        except ValueError:
            value = None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 10:
        reader.error(node, "a threshold is a percentage like 80% or a fraction like 0.8 (above 0)")
        return None
    return float(value)
