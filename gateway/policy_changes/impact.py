"""Policy impact: what a proposed policy would decide differently for statements users actually ran.

Each audited statement is planned twice, as its original identity, under the current and the proposed
policy, with the same planner the server uses; nothing is executed. For every table the statement reads
the two decisions are compared: access (allowed / denied), the row filter, the column masks. A change that
can give someone more than before is a widening: denied -> allowed, a filter or mask lost, or a filter or
mask replaced by another one (the replay cannot prove a different predicate or mask shows less, so it
fails closed and counts the change as widening).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.catalog import CatalogSnapshot
from gateway.errors import GatewayError, PermissionDenied
from gateway.identity import Identity
from gateway.pg_catalog import PG_DIALECT
from gateway.planner import Planner, PolicyContext
from gateway.policy.decide import TableDecision, decide_table
from gateway.policy.model import MaskRef, PolicySet
from gateway.session import Session
from gateway.sql.rewrite import SecureViews

# change kinds, in report order; the first five widen access
DENIED_TO_ALLOWED = "denied->allowed"
FILTER_LOST = "filter lost"
FILTER_CHANGED = "filter changed"
MASK_LOST = "mask lost"
MASK_CHANGED = "mask changed"
ALLOWED_TO_DENIED = "allowed->denied"
FILTER_GAINED = "filter gained"
MASK_GAINED = "mask gained"
STOPS_PLANNING = "stops planning"
STARTS_PLANNING = "starts planning"
WIDENING = frozenset({DENIED_TO_ALLOWED, FILTER_LOST, FILTER_CHANGED, MASK_LOST, MASK_CHANGED})


@dataclass(frozen=True)
class Statement:
    """One audited statement as replayed: who ran it, where, and its text (from the audit record)."""

    identity: Identity
    sql: str
    source: str | None = None
    catalog: str | None = None
    schema: str | None = None
    frontend: str = "trino_http"


@dataclass(frozen=True, order=True)
class Change:
    user: str
    table: str  # catalog.schema.table, or "-" when the statement names no table it could resolve
    kind: str
    detail: str
    sql: str

    @property
    def widens(self) -> bool:
        return self.kind in WIDENING


@dataclass(frozen=True)
class _Outcome:
    """One planning of one statement: the tables' decisions, or the error that stopped planning."""

    decisions: dict[str, TableDecision]
    error: GatewayError | None
    columns: dict[str, frozenset[str]] = field(default_factory=dict)  # table -> the columns the statement reads

    @property
    def denied(self) -> bool:
        return isinstance(self.error, PermissionDenied)


class Replay:
    """Plans statements under two policies against one catalog snapshot."""

    def __init__(self, *, planner: Planner, snapshot: CatalogSnapshot, current: PolicySet,
                 proposed: PolicySet) -> None:
        self.planner = planner
        self.snapshot = snapshot
        self.current = PolicyContext(current, SecureViews())
        self.proposed = PolicyContext(proposed, SecureViews())

    def changes(self, statements: Iterable[Statement]) -> list[Change]:
        found: set[Change] = set()
        for statement in dict.fromkeys(statements):  # the same statement by the same identity replays once
            found.update(self._compare(statement))
        return sorted(found, key=lambda c: (not c.widens, c.user, c.table, c.kind, c.sql))

    def _compare(self, statement: Statement) -> list[Change]:
        before = self._plan(statement, self.current)
        after = self._plan(statement, self.proposed)
        user = statement.identity.user

        def change(table: str, kind: str, detail: str) -> Change:
            return Change(user, table, kind, detail, statement.sql)

        if before.error is not None and after.error is None:
            kind = DENIED_TO_ALLOWED if before.denied else STARTS_PLANNING
            return [change(table, kind, f"was: {before.error.message}") for table in list(after.decisions) or ["-"]]
        if after.error is not None and before.error is None:
            kind = ALLOWED_TO_DENIED if after.denied else STOPS_PLANNING
            return [change(table, kind, after.error.message) for table in list(before.decisions) or ["-"]]
        if after.error is not None or before.error is not None:
            return []  # refused both times (the reason may differ; the access does not)
        changes: list[Change] = []
        for table in sorted(set(before.decisions) | set(after.decisions)):
            old, new = before.decisions.get(table), after.decisions.get(table)
            if old is None or new is None:
                continue
            read = before.columns.get(table, frozenset()) | after.columns.get(table, frozenset())
            changes.extend(change(table, kind, detail) for kind, detail in _table_changes(old, new, read))
        return changes

    def _plan(self, statement: Statement, policy: PolicyContext) -> _Outcome:
        session = Session(user=statement.identity.user, source=statement.source, catalog=statement.catalog,
                          schema=statement.schema, frontend=statement.frontend,
                          dialect=PG_DIALECT if statement.frontend == "pgwire" else "trino")
        try:
            plan = self.planner.plan(statement.sql, session=session, identity=statement.identity,
                                     snapshot=self.snapshot, policy=policy)
        except GatewayError as error:
            return _Outcome({}, error)
        except RecursionError:
            return _Outcome({}, GatewayError("the statement is nested too deeply"))
        decisions = {str(t): decide_table(policy.policy, str(t), statement.identity, statement.source)
                     for t in plan.tables if not t.is_metadata}
        columns = {table: frozenset(c.lower() for c in read) for table, read in plan.columns_read.items()}
        return _Outcome(decisions, None, columns)


def _filter(decision: TableDecision) -> str | None:
    if decision.no_rows:
        return "no rows (no row filter rule matches)"
    if decision.row_filter is None or decision.row_filter.filter.strip().lower() == "true":
        return None  # `filter: "true"` (the admins' rule) is every row, as no filter is
    return decision.row_filter.filter


def _table_changes(old: TableDecision, new: TableDecision, read: frozenset[str]) -> list[tuple[str, str]]:
    """Filter changes, and mask changes on the columns the statement reads (all, if that is not known)."""
    changes: list[tuple[str, str]] = []
    old_filter, new_filter = _filter(old), _filter(new)
    if old_filter is not None and new_filter is None:
        changes.append((FILTER_LOST, f"was: {old_filter}"))
    elif old_filter is None and new_filter is not None:
        changes.append((FILTER_GAINED, new_filter))
    elif old_filter != new_filter:
        changes.append((FILTER_CHANGED, f"{old_filter} -> {new_filter}"))
    old_masks = {m.column.lower(): m.mask for m in old.masks}
    new_masks = {m.column.lower(): m.mask for m in new.masks}
    for column in sorted(c for c in old_masks.keys() | new_masks.keys() if not read or c in read):
        before, after = old_masks.get(column), new_masks.get(column)
        if before is not None and after is None:
            changes.append((MASK_LOST, f"{column} (was {_describe(before)})"))
        elif before is None and after is not None:
            changes.append((MASK_GAINED, f"{column} ({_describe(after)})"))
        elif before != after and before is not None and after is not None:
            changes.append((MASK_CHANGED, f"{column}: {_describe(before)} -> {_describe(after)}"))
    return changes


def _describe(mask: MaskRef) -> str:
    return mask.builtin if mask.builtin is not None else f"sql {mask.sql}"
