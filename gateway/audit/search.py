"""What auditors filter on (`/api/audit`, `gateway audit search`): one value object and its SQL condition."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.audit.record import DECISIONS
from gateway.audit.text import storable


class SearchError(ValueError):
    """A filter value that cannot be used (unknown decision, bad time, bad page size)."""


@dataclass(frozen=True, kw_only=True)
class Search:
    user: str | None = None
    query_id: str | None = None
    table: str | None = None  # catalog.schema.table, or a suffix of it (schema.table, table)
    decision: str | None = None
    since: datetime | None = None  # received_at >= since
    until: datetime | None = None  # received_at < until
    limit: int = 100
    before_id: int | None = None  # pagination: records stored before this one (newest first)

    def __post_init__(self) -> None:
        if self.decision is not None and self.decision not in DECISIONS:
            raise SearchError(f"unknown decision {self.decision!r} (expected one of: {', '.join(DECISIONS)})")
        if not 1 <= self.limit <= 10000:
            raise SearchError("limit must be between 1 and 10000")

    def where(self, mark: Callable[[int], str], time_value: Callable[[datetime], object]) -> tuple[str, list[object]]:
        """A WHERE condition (always true when no filter is set) and its parameters; `mark(n)` writes the
        n-th placeholder in the store's style, `time_value` converts a bound for the store's time column."""
        parts: list[str] = []
        values: list[object] = []

        def add(condition: str, value: object, *, as_is: bool = False) -> None:
            values.append(value if as_is else storable(value))  # compared with the stored (escaped) text
            parts.append(condition.format(mark(len(values))))

        if self.user is not None:
            add("user_name = {}", self.user)
        if self.query_id is not None:
            add("query_id = {}", self.query_id)
        if self.table is not None:
            as_stored = json.dumps(storable(self.table.lower()), ensure_ascii=False)[1:-1]  # inside the JSON list
            name = as_stored.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f'%"{name}"%' if name.count(".") >= 2 else f'%.{name}"%'
            add("tables_read LIKE {} ESCAPE '\\'", pattern, as_is=True)
        if self.decision is not None:
            add("decision = {}", self.decision)
        if self.since is not None:
            add("received_at >= {}", time_value(self.since))
        if self.until is not None:
            add("received_at < {}", time_value(self.until))
        if self.before_id is not None:
            add("id < {}", self.before_id)
        return (" AND ".join(parts) or "1 = 1"), values


PARAMETERS = ("user", "query_id", "table", "decision", "since", "until", "limit", "before_id")
MAX_LIMIT = 10_000
MAX_ID = 2**63 - 1  # storage ids are 64-bit in every store
_DIGITS = re.compile(r"[0-9]{1,19}")


def search_from_params(params: Mapping[str, str], *, default_limit: int = 100) -> Search:
    """The search a request's query parameters ask for (`/api/audit`, the console's audit page)."""
    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise SearchError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    return Search(user=params.get("user"), query_id=params.get("query_id"), table=params.get("table"),
                  decision=params.get("decision"), since=parse_time(params.get("since"), "since"),
                  until=parse_time(params.get("until"), "until"),
                  limit=parse_id(params.get("limit"), "limit", default_limit, MAX_LIMIT),
                  before_id=parse_id(params.get("before_id"), "before_id", None))


def parse_id(value: str | None, name: str, default: int | None, maximum: int = MAX_ID) -> Any:
    """A positive integer the stores can compare with (64-bit); ASCII digits only (`str.isdigit` also takes
    `²` and other digits `int` refuses)."""
    if value is None:
        return default
    if not _DIGITS.fullmatch(value) or not 0 < int(value) <= maximum:
        raise SearchError(f"{name} must be an integer from 1 to {maximum}")
    return int(value)


def parse_time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time from a filter (`Z` accepted); UTC unless it carries an offset."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: a time at the edge of the calendar with an offset
        raise SearchError(f"{name} must be an ISO 8601 time, e.g. 2025-01-31T12:00:00Z") from None
