"""Chargeback: ledger rows -> totals per cost center, owner, user or table. Pure.

`by=cost_center` and `by=user` total the charges (the consumer side); `by=owner` and `by=table` total the
attributions (each query's cost split equally over the tables it read; a query that read no table counts
under `(none)`). Either way the report's total is the sum of the charges in the window.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from gateway.audit.record import format_time

DIMENSIONS = ("cost_center", "owner", "user", "table")
FORMATS = ("table", "csv", "json")
NONE = "(none)"


class ReportError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Line:
    key: str
    queries: int
    cost: float


@dataclass(frozen=True, slots=True)
class Report:
    by: str
    start: str
    end: str
    lines: tuple[Line, ...]
    total_cost: float
    total_queries: int

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "from": self.start, "to": self.end, "total_cost": self.total_cost,
                "total_queries": self.total_queries,
                "rows": [{self.by: line.key, "queries": line.queries, "cost": line.cost} for line in self.lines]}


def parse_bound(text: str, what: str) -> str:
    """A date (2026-11-01, midnight UTC) or an ISO 8601 time -> the ledger's time text."""
    try:
        if len(text) == 10:
            return format_time(datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC))
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return format_time(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    except (ValueError, OverflowError):  # overflow: a time at the edge of the calendar with an offset
        raise ReportError(f"{what} must be a date like 2026-11-01 or an ISO 8601 time, not {text[:40]!r}") from None


def chargeback(*, by: str, start: str, end: str, charges: Sequence[dict[str, Any]],
               attributions: Sequence[dict[str, Any]]) -> Report:
    if by not in DIMENSIONS:
        raise ReportError(f"by must be one of {', '.join(DIMENSIONS)}, not {by!r}")
    if start >= end:
        raise ReportError("from must be before to")
    costs: dict[str, float] = {}
    events: dict[str, set[str]] = {}
    if by in ("cost_center", "user"):
        rows, field = charges, "cost_center" if by == "cost_center" else "user_name"
    else:
        rows, field = attributions, "owner" if by == "owner" else "table_name"
    for row in rows:
        key = row[field] or NONE
        costs[key] = costs.get(key, 0.0) + float(row["cost"] or 0.0)
        events.setdefault(key, set()).add(row["event_id"])
    lines = tuple(sorted((Line(k, len(events[k]), round(v, 10)) for k, v in costs.items()),
                         key=lambda line: (-line.cost, line.key)))
    total = sum(float(c["cost"] or 0.0) for c in charges)
    return Report(by=by, start=start, end=end, lines=lines, total_cost=round(total, 10), total_queries=len(charges))


def render(report: Report, form: str) -> str:
    if form == "json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([report.by, "queries", "cost"])
        for line in report.lines:
            writer.writerow([line.key, line.queries, f"{line.cost:.6f}"])
        return out.getvalue()
    width = max([len(report.by), 5, *(len(line.key) for line in report.lines)])
    text = [f"chargeback by {report.by}, {report.start} .. {report.end}",
            f"{report.by:<{width}}  {'queries':>9}  {'cost':>14}"]
    text += [f"{line.key:<{width}}  {line.queries:>9}  {line.cost:>14.6f}" for line in report.lines]
    text.append(f"{'total':<{width}}  {report.total_queries:>9}  {report.total_cost:>14.6f}")
    return "\n".join(text) + "\n"
