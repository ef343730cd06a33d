"""Secure-view rewriting: `secure_rewrite(tree, ...)` -> the query with every protected table behind its view.

Each base table the caller may read with restrictions is replaced, where it is referenced, by

    (SELECT <column or CAST(mask AS type) AS column, ...>
     FROM catalog.schema.table WHERE <row filter>) AS <alias>

so the row filter sees raw values and every operator above the view sees masked ones, as in Trino (column
masks are projected above the filter). A table allowed with no filter and no masks stays as written; a table
no policy allows denies the whole query.

Row filters and mask templates are admin-written SQL in the backend dialect (`dialect`). They are trusted:
tables they read (e.g. the orders filter's customer subquery) are read raw and are not rewritten again,
like a Trino view's owner rights. To keep them out of the user's reach, tables in them are fully qualified
(a user CTE cannot shadow them) and every column in them must resolve inside the view (a user column cannot
be captured by a misspelt filter column). Identity attributes (`:nations`) are bound as literal nodes.

Views are built once per (table decision, columns, bound attribute values) in a `SecureViews` the caller
holds, and copied per use.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify_columns import qualify_columns, validate_qualify_columns
from sqlglot.optimizer.qualify_tables import qualify_tables
from sqlglot.schema import MappingSchema

from gateway.errors import NotSupported, PermissionDenied
from gateway.identity import AttributeValue, Identity
from gateway.policy.decide import TableDecision, decide_table
from gateway.policy.model import PolicySet, TableGrant
from gateway.sql.analyze import base_tables, table_name
from gateway.sql.barrier import fenced, fenced_source, is_reserved
from gateway.sql.dialects import catalog_names
from gateway.sql.masks import MaskError, mask_expression, parse_type

# catalog -> schema -> table -> {column: Trino type text}, columns in table order
Catalog = Mapping[str, Mapping[str, Mapping[str, Mapping[str, str]]]]

V = TypeVar("V")

# Statement, session and placeholder nodes: never part of a query the gateway runs.
_FORBIDDEN: tuple[type[exp.Expr], ...] = (
    exp.DDL,
    exp.DML,
    exp.Command,
    exp.Lock,
    exp.Placeholder,
    exp.Parameter,
    exp.SessionParameter,
    exp.Into,
    exp.Set,
    exp.Pragma,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Describe,
    exp.Show,
    exp.Kill,
    exp.Refresh,
    exp.Cache,
    exp.Uncache,
    exp.LoadData,
    exp.Attach,
    exp.Detach,
    exp.Install,
    exp.Export,
    exp.Analyze,
    exp.Summarize,
)
# Table modifiers a secure view carries over: onto its inner table (sample) or onto the view (pivots).
_MOVABLE_TABLE_ARGS = {"this", "db", "catalog", "alias", "sample", "pivots"}


@dataclass(frozen=True, slots=True)
class RewriteResult:
    tree: exp.Query  # the secure query; generate it for the backend dialect
    tables: tuple[str, ...]  # base tables read, catalog.schema.table, first-seen order
    rules_applied: tuple[str, ...]  # e.g. "row_filter demo.tpch.customer #2", "mask ...c_phone:last4"
    policy_version: str
    restricted: bool = False  # a table read has a row filter or a column mask for this identity


class SecureViews:
    """Built secure-view subtrees, reused across queries. Hold one per policy set; safe to share.

    Keys are the decision (the rules chosen, not who chose them), the table's columns and the values of
    the attributes a view binds, so two callers with the same facts share a view and nobody else does.
    """

    def __init__(self, *, max_entries: int = 2048) -> None:
        self._templates: _Lru[_Template] = _Lru(max_entries)
        self._views: _Lru[_View] = _Lru(max_entries)

    def _view(self, decision: TableDecision, schema: Catalog, identity: Identity, dialect: str,
              hash_key: str) -> _View:
        columns = _columns(schema, decision.table)
        template_key = (decision, columns, dialect, hash_key)
        template = self._templates.get(template_key)
        if template is None:
            template = _build_template(decision, columns, schema, dialect, hash_key)
            self._templates.put(template_key, template)
        facts = tuple((name, _typed(identity.attributes.get(name))) for name in template.attributes)
        view_key = (template_key, facts)
        view = self._views.get(view_key)
        if view is None:
            view = _View(_bind(template.select, identity, decision.table), template.rules, template.restricted)
            self._views.put(view_key, view)
        return view


class _Lru(Generic[V]):
    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()  # get's move_to_end races with another thread's eviction

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


def secure_rewrite(
    tree: exp.Expr,
    *,
    identity: Identity,
    policy: PolicySet,
    schema: Catalog,
    source: str | None,
    dialect: str,
    hash_key: str,
    views: SecureViews | None = None,
    copy: bool = True,
    grants: Sequence[TableGrant] = (),
) -> RewriteResult:
    """Authorize `tree` for `identity` and return it with protected tables behind secure views.

    `tree` is a parsed query whose base tables the caller has qualified to catalog.schema.table with
    normalized identifiers; it is not modified unless `copy=False` (for a caller that owns the tree: copying
    is the largest part of a rewrite). `schema` lists the backend's columns; `source` is the client
    application; `dialect` is the backend dialect, in which policy SQL is written; `hash_key` is the text
standing for the mask key in planned SQL (`MaskKey.sentinel`); `grants` are the identity's active
    just-in-time grants, each one used named in the rules as `grant:<id>`. Raises `PermissionDenied`
    or `NotSupported`; never returns a partially protected query.
    """
    if not isinstance(tree, exp.Query):
        raise NotSupported("only queries can run through the gateway")
    if copy:
        tree = tree.copy()
    _reject_forbidden(tree)
    views = views if views is not None else SecureViews()

    decisions: dict[str, TableDecision] = {}
    rules: list[str] = []
    restricted = False
    for table in base_tables(tree):
        name = table_name(table)
        decision = decisions.get(name)
        if decision is None:
            decision = decide_table(policy, name, identity, source, grants)
            if not decision.allowed:
                raise PermissionDenied(f"Cannot select from table {name}")
            decisions[name] = decision
            rules.append(f"access {name}: {decision.reason}")
            rules.extend(f"grant:{grant}" for grant in decision.grants if f"grant:{grant}" not in rules)
        if decision.unrestricted:
            continue
        view = views._view(decision, schema, identity, dialect, hash_key)
        restricted = restricted or view.restricted
        for rule in view.rules:
            if rule not in rules:
                rules.append(rule)
        table.replace(_place(view, table))
    return RewriteResult(tree=tree, tables=tuple(decisions), rules_applied=tuple(rules), policy_version=policy.version,
                         restricted=restricted)


@dataclass(frozen=True, slots=True)
class _Template:
    select: exp.Select  # the view with :name placeholders still in it
    attributes: tuple[str, ...]  # the placeholder names, i.e. the identity facts this view reads
    rules: tuple[str, ...]
    restricted: bool  # hides rows or values (not an admin's `filter: "true"` without masks)


@dataclass(frozen=True, slots=True)
class _View:
    select: exp.Select
    rules: tuple[str, ...]
    restricted: bool


def _place(view: _View, table: exp.Table) -> exp.Subquery:
    """A copy of `view` standing where `table` stood, under the same alias."""
    extra = {k for k, v in table.args.items() if v not in (None, [], False)} - _MOVABLE_TABLE_ARGS
    if extra:
        raise NotSupported(f"{', '.join(sorted(extra))} on protected table {table_name(table)} is not supported")
    select = view.select.copy()
    if sample := table.args.get("sample"):
        fenced_source(select).set("sample", sample.copy())
    alias = table.args.get("alias")
    # No alias means the table's own name qualifies its columns above, so the view takes that name.
    alias = alias.copy() if alias is not None else exp.TableAlias(this=table.this.copy())
    subquery = exp.Subquery(this=select, alias=alias)
    if pivots := table.args.get("pivots"):
        subquery.set("pivots", [p.copy() for p in pivots])
    return subquery


def _columns(schema: Catalog, name: str) -> tuple[tuple[str, str], ...]:
    catalog, db, table_part = name.split(".")
    columns = schema.get(catalog, {}).get(db, {}).get(table_part)
    if not columns:
        # Without the column list the view cannot be built; the policy says the table is protected.
        raise PermissionDenied(f"Cannot select from table {name}: its columns are unknown to the gateway")
    return tuple(columns.items())


def _build_template(
    decision: TableDecision, columns: tuple[tuple[str, str], ...], schema: Catalog, dialect: str, hash_key: str
) -> _Template:
    catalog, db, name = decision.table.split(".")
    rules: list[str] = []
    masks = {m.column: m for m in decision.masks}
    by_lower = {column.lower(): column for column, _ in columns}
    unknown = sorted(set(masks) - by_lower.keys())
    if unknown:
        # The policy masks a column the table lacks: renamed? Deny rather than guess what is unprotected.
        raise PermissionDenied(f"policy for {decision.table} masks unknown column(s) {', '.join(unknown)}")

    projections: list[tuple[str, exp.Expr]] = []
    for column, trino_type in columns:
        if is_reserved(column):
            raise PermissionDenied(f"Cannot select from table {decision.table}: column {column} has a name "
                                   "the gateway reserves")
        ref = exp.column(exp.to_identifier(column, quoted=True))
        mask = masks.get(column.lower())
        if mask is None:
            projections.append((column, ref))
            continue
        try:
            masked, how = mask_expression(mask.mask, ref, parse_type(trino_type), dialect=dialect,
                                           hash_key=hash_key)
        except (MaskError, ParseError) as exc:
            raise PermissionDenied(f"mask for {decision.table}.{column} is invalid: {exc}") from exc
        projections.append((column, masked))
        rules.append(f"mask {decision.table}.{column}:{how}")

    inner = exp.Table(
        this=exp.to_identifier(name, quoted=True),
        db=exp.to_identifier(db, quoted=True),
        catalog=exp.to_identifier(catalog, quoted=True),
    )
    visible: exp.Expr | None = None
    if decision.no_rows:
        visible = exp.false()
        rules.append(f"row_filter {decision.table}: no rule matches, no rows")
    elif decision.row_filter is not None:
        visible = _policy_sql(decision.row_filter.filter, dialect, decision.table)
        rules.append(f"row_filter {decision.table} #{decision.row_filter_index}")
        if visible == exp.true():
            visible = None  # `filter: "true"` (an admin's rule): every row, so nothing to fence
    select = fenced(inner, [column for column, _ in columns], projections, visible, dialect=dialect)

    # Fully qualified, so a CTE the user names like a table in the filter cannot stand in for it.
    select = qualify_tables(select, catalog=catalog, db=db, dialect=catalog_names(dialect))
    _check_policy_columns(select, schema, decision.table, dialect)
    placeholders = [p.name for p in select.find_all(exp.Placeholder)]
    if any(not name for name in placeholders):
        raise PermissionDenied(f"policy for {decision.table} uses an unnamed placeholder")
    restricted = visible is not None or bool(masks)
    return _Template(select, tuple(dict.fromkeys(placeholders)), tuple(rules), restricted)


def _policy_sql(sql: str, dialect: str, table: str) -> exp.Expr:
    try:
        condition = sqlglot.parse_one(sql, read=dialect)
    except ParseError as exc:
        raise PermissionDenied(f"row filter for {table} does not parse: {exc}") from exc
    condition = normalize_identifiers(condition, dialect=catalog_names(dialect))
    if any(isinstance(node, _FORBIDDEN) and not isinstance(node, exp.Placeholder) for node in condition.walk()):
        raise PermissionDenied(f"row filter for {table} must be a condition, not a statement")
    return condition


def _check_policy_columns(select: exp.Select, schema: Catalog, table: str, dialect: str) -> None:
    """Every column in the view must resolve inside it, or the user's query could supply it."""
    nested: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for inner in select.find_all(exp.Table):
        columns = schema.get(inner.catalog, {}).get(inner.db, {}).get(inner.name)
        if columns is None:
            raise PermissionDenied(f"policy for {table} reads unknown table {inner.sql()}")
        nested.setdefault(inner.catalog, {}).setdefault(inner.db, {})[inner.name] = dict(columns)
    mapping: dict[str, object] = dict(nested)
    try:
        # Checked on a copy: the projection names must stay as built.
        validate_qualify_columns(qualify_columns(select.copy(), MappingSchema(mapping, dialect=catalog_names(dialect))))
    except OptimizeError as exc:
        raise PermissionDenied(f"policy for {table} references a column it cannot resolve: {exc}") from exc


def _bind(select: exp.Select, identity: Identity, table: str) -> exp.Select:
    """A copy of `select` with each `:name` replaced by the caller's attribute as literal node(s)."""
    bound = select.copy()
    for placeholder in list(bound.find_all(exp.Placeholder)):
        value = identity.attributes.get(placeholder.name)
        if value is None:
            # Never NULL: NOT, IS NULL or COALESCE around it could turn a missing value into more rows.
            raise PermissionDenied(f"policy for {table} needs identity attribute {placeholder.name!r}")
        parent = placeholder.parent
        if isinstance(value, tuple):
            if not isinstance(parent, exp.In) or placeholder.arg_key != "expressions":
                raise PermissionDenied(f"list attribute {placeholder.name!r} may only be used in IN (...)")
            items: list[exp.Expr] = []
            for item in parent.expressions:
                if item is placeholder:
                    # An empty list is IN (NULL): neither IN nor NOT IN then passes any row.
                    items.extend([_literal(v, placeholder.name) for v in value] or [exp.null()])
                else:
                    items.append(item)
            parent.set("expressions", items)
        else:
            placeholder.replace(_literal(value, placeholder.name))
    return bound


def _typed(value: AttributeValue | None) -> Hashable:
    # 1, 1.0 and True are equal as dict keys but bind to different SQL literals.
    if isinstance(value, tuple):
        return tuple((type(v).__name__, v) for v in value)
    return (type(value).__name__, value)


def _literal(value: AttributeValue, name: str) -> exp.Expr:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, float) and math.isfinite(value):
        return exp.Literal.number(repr(value))
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise PermissionDenied(f"identity attribute {name!r} has a value that cannot be used in a filter")


def _reject_forbidden(tree: exp.Expr) -> None:
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN):
            raise NotSupported(f"{node.key.upper()} is not allowed in a query")


def check_view(decision: TableDecision, schema: Catalog, dialect: str) -> None:
    """Build the secure view `decision` describes, raising PermissionDenied for anything that would deny it
    at query time (unparseable filter, unknown column, mask not applicable). For `gateway policy check`."""
    _build_template(decision, _columns(schema, decision.table), schema, dialect, CHECK_HASH_KEY)


CHECK_HASH_KEY = "gwmaskkey0xpolicycheck"  # stands for the key where no query runs (policy check)
