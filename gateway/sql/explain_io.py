"""`EXPLAIN (TYPE IO, FORMAT JSON)`: Trino's IoPlan JSON (what Superset's cost estimate reads), pure.

    {"inputTableColumnInfos": [{"table": {"catalog", "schemaTable": {"schema", "table"}}, "constraint": ...,
                                "estimate": {...}}, ...],
     "estimate": {"outputRowCount", "outputSizeInBytes", "cpuCost", "maxMemory", "networkCost"}}

Row counts come from the backend's own plan (DuckDB's `EXPLAIN (FORMAT JSON)` estimated cardinalities) only
for an identity that reads every table unfiltered and unmasked. For anyone with a row filter or mask on a
table read, every estimate is unknown ("NaN", as Trino writes an unknown estimate): a row count of the whole
table, or of a scan before the filter, would reveal how many rows the filter removes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.catalog import TableName

UNKNOWN = "NaN"
COLUMN = "Query Plan"


@dataclass(frozen=True)
class IoExplain:
    """An IO explain still waiting for the backend's estimates (None: answered without them)."""

    tables: tuple[TableName, ...]


def _estimate(rows: float | None) -> dict[str, Any]:
    return {"outputRowCount": UNKNOWN if rows is None else rows, "outputSizeInBytes": UNKNOWN,
            "cpuCost": UNKNOWN, "maxMemory": UNKNOWN, "networkCost": UNKNOWN}


def io_plan_json(tables: Sequence[TableName], *, scans: Mapping[TableName, float] | None = None,
                 output_rows: float | None = None) -> str:
    scans = scans or {}
    infos = [{"table": {"catalog": t.catalog, "schemaTable": {"schema": t.schema, "table": t.table}},
              "constraint": {"none": False, "columnConstraints": []}, "estimate": _estimate(scans.get(t))}
             for t in sorted(set(tables))]
    return json.dumps({"inputTableColumnInfos": infos, "estimate": _estimate(output_rows)}, indent=2)


def from_duckdb_plan(explain: IoExplain, plan_json: str) -> str:
    """The IoPlan JSON from DuckDB's `EXPLAIN (FORMAT JSON)` output of the (unrestricted) query."""
    try:
        roots = json.loads(plan_json)
    except ValueError:
        return io_plan_json(explain.tables)
    scans: dict[TableName, float] = {}

    def walk(node: Mapping[str, Any]) -> None:
        info = node.get("extra_info") or {}
        table = str(info.get("Table", "")).replace('"', "")
        for name in explain.tables:
            if table.endswith(f"{name.schema}.{name.table}") and "Estimated Cardinality" in info:
                scans[name] = scans.get(name, 0.0) + _number(info["Estimated Cardinality"])
        for child in node.get("children") or []:
            walk(child)

    output: float | None = None
    for root in roots if isinstance(roots, list) else []:
        walk(root)
        cardinality = (root.get("extra_info") or {}).get("Estimated Cardinality")
        output = _number(cardinality) if cardinality is not None else output
    return io_plan_json(explain.tables, scans=scans, output_rows=output)


def _number(text: object) -> float:
    try:
        return float(str(text).lstrip("~"))
    except ValueError:
        return 0.0

