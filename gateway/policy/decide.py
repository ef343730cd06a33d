"""Policy decisions: for one caller and one table, may they read it, which rows, which masks.

Pure functions over `PolicySet` and `Identity`; the SQL rewriter turns a `TableDecision` into a secure view.

Rules, as DESIGN.md states them for admins:
- The entry for a table is the most specific matching `tables:` entry. Parts are compared table first, then
  schema, then catalog; within a part an exact name beats a partial wildcard (`cust*`) beats `*`, and a
  2-part name counts as `*` for the catalog. Two equally specific matches deny the table (fail closed), and
  `equally_specific` lets `policy check` report them.
- `access`: first matching rule wins; none matches -> denied.
- `row_filters`: absent -> all rows; else first matching rule wins; none matches -> no rows.
- Columns: a column's own `mask` wins over its classification's mask; the mask applies unless the matching
  `unmask_when` holds.
- Just-in-time grants (approved access requests, passed in as data for this identity and not yet expired):
  a grant on the table lets the identity read it where no access rule matches; an explicit `allow: false`
  rule still denies, and so do equally specific entries. Row filters apply as to anyone else (none matching:
  no rows). Columns a grant names are unmasked. Each grant that widened the decision is named in `grants`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.identity import AttributeValue, Identity
from gateway.policy.model import (
    Approvers,
    AttributeTest,
    MaskRef,
    PolicySet,
    RowFilter,
    TableGrant,
    TablePolicy,
    When,
)


@dataclass(frozen=True, slots=True)
class ColumnMask:
    column: str
    mask: MaskRef
    origin: str  # "column" or "classification <tag>", for explain output


@dataclass(frozen=True, slots=True)
class TableDecision:
    """What one caller gets from one table. Hashable: the rewriter keys its view cache on it."""

    table: str  # catalog.schema.table
    allowed: bool
    reason: str  # human-readable: the entry and rule that decided
    row_filter: RowFilter | None  # None with no_rows False: every row
    row_filter_index: int | None  # 1-based position of `row_filter` in its entry, for "rules applied"
    no_rows: bool  # row_filters present but none matched
    masks: tuple[ColumnMask, ...]
    grants: tuple[str, ...] = ()  # ids of the just-in-time grants that widened this decision

    @property
    def unrestricted(self) -> bool:
        return self.allowed and self.row_filter is None and not self.no_rows and not self.masks


def when_matches(when: When | None, identity: Identity, source: str | None) -> bool:
    if when is None:
        return True
    if when.users is not None and identity.user not in when.users:
        return False
    if when.groups is not None and when.groups.isdisjoint(identity.groups):
        return False
    if when.source is not None and (source is None or _regex(when.source).fullmatch(source) is None):
        return False
    for name, test in when.attributes:
        value = identity.attributes.get(name)
        if value is None or not _attribute_matches(test, value):
            return False
    return True


def decide_impersonation(policy: PolicySet, principal: Identity, user: str, source: str | None) -> tuple[bool, str]:
    """May the authenticated `principal` act as session user `user`? The first rule whose `when` matches the
    principal and whose `new_user` matches the whole user name decides; none -> no (Trino's semantics)."""
    if user == principal.user:
        return True, "same user"
    for rule in policy.impersonation:
        if when_matches(rule.when, principal, source) and _regex(rule.new_user).fullmatch(user) is not None:
            verdict = "allows" if rule.allow else "denies"
            return rule.allow, f"impersonation rule at {rule.location} {verdict}"
    return False, "no impersonation rule matches"


def decide_table(policy: PolicySet, table: str, identity: Identity, source: str | None,
                 grants: Sequence[TableGrant] = ()) -> TableDecision:
    """`grants`: the identity's active just-in-time grants (any tables; those on `table` are used)."""
    entries = equally_specific(policy, table)
    if not entries:
        return _denied(table, "no policy entry covers this table")
    if len(entries) > 1:
        where = ", ".join(f"{e.name} ({e.location})" for e in entries)
        return _denied(table, f"equally specific policy entries: {where}")
    entry = entries[0]
    granted = tuple(g for g in grants if g.table == table)
    used: list[str] = []
    rule = next((r for r in entry.access if when_matches(r.when, identity, source)), None)
    if rule is not None and not rule.allow:
        return _denied(table, f"access rule at {rule.location} denies ({entry.name} at {entry.location})")
    if rule is None:
        if not granted:
            return _denied(table, f"no access rule matches ({entry.name} at {entry.location})")
        used.extend(g.id for g in granted)
        reason = f"{', '.join(f'grant:{g}' for g in used)} ({entry.name})"
    else:
        reason = f"access rule at {rule.location} ({entry.name})"

    row_filter, index, no_rows = None, None, False
    if entry.row_filters is not None:
        matched = next(
            ((i, f) for i, f in enumerate(entry.row_filters, 1) if when_matches(f.when, identity, source)),
            None,
        )
        if matched is None:
            no_rows = True
        else:
            index, row_filter = matched
    masks = _masks(policy, entry, identity, source)
    if granted:
        kept = []
        for mask in masks:
            unmasking = [g.id for g in granted if mask.column in g.columns]
            if unmasking:
                used.extend(g for g in unmasking if g not in used)
            else:
                kept.append(mask)
        masks = tuple(kept)
    return TableDecision(
        table=table,
        allowed=True,
        reason=reason,
        row_filter=row_filter,
        row_filter_index=index,
        no_rows=no_rows,
        masks=masks,
        grants=tuple(used),
    )


def approvers_for(policy: PolicySet, entry: TablePolicy) -> Approvers | None:
    """Who may approve access requests for the tables `entry` governs: its own `approvers:`, else its
    classification's (`classification_approvers:`); None: nobody, requests are refused."""
    if entry.approvers is not None:
        return entry.approvers
    if entry.classification is not None:
        return policy.classification_approvers.get(entry.classification)
    return None


def is_approver(approvers: Approvers | None, identity: Identity) -> bool:
    return approvers is not None and (identity.user in approvers.users or not approvers.groups.isdisjoint(
        identity.groups))


def equally_specific(policy: PolicySet, table: str) -> tuple[TablePolicy, ...]:
    """The most specific entries matching `table` (catalog.schema.table); more than one is a policy bug."""
    parts = table.split(".")
    best: list[TablePolicy] = []
    best_rank: tuple[int, int, int] | None = None
    for entry in policy.tables:
        rank = _rank(entry.name, parts)
        if rank is None:
            continue
        if best_rank is None or rank > best_rank:
            best, best_rank = [entry], rank
        elif rank == best_rank:
            best.append(entry)
    return tuple(best)


def _masks(policy: PolicySet, entry: TablePolicy, identity: Identity, source: str | None) -> tuple[ColumnMask, ...]:
    masks: list[ColumnMask] = []
    for column in entry.columns.values():
        if column.mask is not None:
            mask, unmask_when, origin = column.mask, column.unmask_when, "column"
        elif column.classification is not None and column.classification in policy.classification_masks:
            by_tag = policy.classification_masks[column.classification]
            mask, unmask_when, origin = (
                by_tag.mask,
                by_tag.unmask_when,
                f"classification {column.classification}",
            )
        else:
            continue
        # An absent unmask_when means "always masked", so it must not fall through to when_matches(None).
        if unmask_when is not None and when_matches(unmask_when, identity, source):
            continue
        masks.append(ColumnMask(column=column.name, mask=mask, origin=origin))
    return tuple(masks)


def _denied(table: str, reason: str) -> TableDecision:
    return TableDecision(table, False, reason, None, None, True, ())


def _rank(pattern: str, parts: list[str]) -> tuple[int, int, int] | None:
    """Specificity of `pattern` for the table `parts`, or None if it does not match."""
    pattern_parts = pattern.split(".")
    if len(pattern_parts) == 2:
        pattern_parts = ["*", *pattern_parts]
    if len(pattern_parts) != 3 or len(parts) != 3:
        return None
    ranks = []
    for pattern_part, part in zip(pattern_parts, parts, strict=True):
        if "*" not in pattern_part:
            if pattern_part != part:
                return None
            ranks.append(2)
        else:
            if _wildcard(pattern_part).fullmatch(part) is None:
                return None
            ranks.append(0 if pattern_part == "*" else 1)
    catalog, schema, table = ranks
    return (table, schema, catalog)


def _attribute_matches(test: AttributeTest, value: AttributeValue) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    if test.equals is not None and not any(_same(v, test.equals) for v in values):
        return False
    if test.any_of is not None and not any(_same(v, want) for v in values for want in test.any_of):
        return False
    if test.gte is not None or test.lte is not None:
        # A list attribute has no single order position, so ranges never match it.
        number = _number(value)
        if number is None:
            return False
        if test.gte is not None and number < test.gte:
            return False
        if test.lte is not None and number > test.lte:
            return False
    return True


def _same(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        # bool is an int in Python; `true` must not equal 1 in a policy.
        return type(a) is type(b) and a == b
    return a == b


def _number(value: AttributeValue) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _regex(source_pattern: str) -> re.Pattern[str]:
    return re.compile(source_pattern)  # re keeps its own cache of compiled patterns


def _wildcard(part: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(piece) for piece in part.split("*")))
