"""Column-level lineage of a resolved query: which base-table columns each output column is made from
(`sqlglot.lineage`), and which columns shape the whole result (filters, joins, grouping, sorting, windows).

Pure and best-effort, like gateway.sql.columns: it describes the user's statement (as resolved, before the
policy rewrite), never decides anything. `masked` names the (table, column) pairs a column mask hid from
this identity, so an output column made from one is marked `masking`. Only base tables of `tables` are ever
named: a column traced to anything else is left out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope
from sqlglot.schema import MappingSchema

from gateway.catalog import CatalogSnapshot
from gateway.errors import GatewayError
from gateway.session import Session
from gateway.sql import statements as st
from gateway.sql.analyze import table_name
from gateway.sql.parameters import bind_parameters, number_placeholders
from gateway.sql.resolve import resolve_query

Catalog = Mapping[str, Mapping[str, Mapping[str, Mapping[str, str]]]]

# OpenLineage transformation subtypes (spec: ColumnLineageDatasetFacet)
IDENTITY, TRANSFORMATION, AGGREGATION = "IDENTITY", "TRANSFORMATION", "AGGREGATION"
_CLAUSES: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.Where, "FILTER"), (exp.Having, "FILTER"), (exp.Join, "JOIN"), (exp.Group, "GROUP_BY"),
    (exp.Order, "SORT"), (exp.Window, "WINDOW"),
)


@dataclass(frozen=True, slots=True, order=True)
class SourceColumn:
    table: str  # catalog.schema.table
    column: str
    subtype: str
    masking: bool = False


@dataclass(frozen=True, slots=True)
class OutputColumn:
    name: str
    inputs: tuple[SourceColumn, ...]  # direct: the values it is computed from


@dataclass(frozen=True, slots=True)
class ColumnLineage:
    outputs: tuple[OutputColumn, ...]
    indirect: tuple[SourceColumn, ...]  # shape every row of the result (filter, join, group, sort, window)


def column_lineage(tree: exp.Query, *, schema: Catalog, dialect: str, tables: Collection[str],
                   masked: Collection[tuple[str, str]] = ()) -> ColumnLineage | None:
    """The lineage of `tree` (already resolved: base tables fully qualified), or None when sqlglot cannot
    trace it (the event then carries no column lineage rather than a wrong one)."""
    known, hidden = frozenset(tables), frozenset(masked)
    try:
        # Only the tables read: sqlglot normalizes every name of the schema it is given, per call.
        mapping = MappingSchema(_subset(schema, known), dialect=dialect)
        qualified = qualify(tree.copy(), schema=mapping, dialect=dialect, validate_qualify_columns=False,
                            identify=False)
        scope = build_scope(qualified)
        if scope is None:
            return None
        nodes = lineage(None, qualified, mapping, dialect=dialect, scope=scope, copy=False)
        outputs = tuple(OutputColumn(_output_name(name), _direct(node, dialect, known, hidden))
                        for name, node in nodes.items())
        return ColumnLineage(outputs=outputs, indirect=_indirect(qualified, known))
    except (SqlglotError, RecursionError, KeyError, ValueError, TypeError, AttributeError):
        return None


def resolved_statement(sql: str, *, session: Session, snapshot: CatalogSnapshot, default_catalog: str
                       ) -> tuple[exp.Query, str] | None:
    """The query a SELECT or EXECUTE ran, resolved as the planner resolves it (gateway.sql.resolve), and its
    text as the client wrote it (for EXECUTE, the prepared statement's); None for any other statement, or
    one that no longer resolves (the catalog changed since it was planned)."""
    try:
        statement = st.classify(sql, dialect=session.dialect)
        if isinstance(statement, st.Execute):
            text = session.prepared_statements.get(statement.name, "") if statement.name else statement.sql or ""
            inner = st.classify(number_placeholders(text), dialect=session.dialect)
            if not isinstance(inner, st.QueryStatement):
                return None
            tree, sql = bind_parameters(inner.tree, statement.parameters), text
        elif isinstance(statement, st.QueryStatement):
            tree = statement.tree
        else:
            return None
        resolved = resolve_query(tree, catalog=session.catalog, schema=session.schema, snapshot=snapshot,
                                 default_catalog=default_catalog)
    except (GatewayError, SqlglotError, RecursionError):  # planned once; now it only means no column lineage
        return None
    return resolved.tree, sql


def _subset(schema: Catalog, tables: frozenset[str]) -> dict[str, object]:
    subset: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for table in tables:
        catalog, db, name = table.split(".", 2)
        columns = schema.get(catalog, {}).get(db, {}).get(name)
        if columns is not None:
            subset.setdefault(catalog, {}).setdefault(db, {})[name] = dict(columns)
    return dict(subset)


def _output_name(name: str) -> str:
    """sqlglot names an unnamed projection _col_N; Trino (and the gateway's result) names it _colN."""
    return f"_col{name[5:]}" if name.startswith("_col_") and name[5:].isdigit() else name


def _direct(root: Node, dialect: str, tables: frozenset[str], masked: frozenset[tuple[str, str]]
            ) -> tuple[SourceColumn, ...]:
    found: set[SourceColumn] = set()
    stack: list[tuple[Node, str]] = [(root, IDENTITY)]
    while stack:
        node, subtype = stack.pop()
        subtype = _combine(subtype, node.expression)
        if node.downstream:
            stack.extend((child, subtype) for child in node.downstream)
            continue
        if not isinstance(node.source, exp.Table):
            continue
        table = table_name(node.source)
        if table not in tables:
            continue
        column = sqlglot.parse_one(node.name, read=dialect, into=exp.Column).name
        found.add(SourceColumn(table, column, subtype, (table, column) in masked))
    return tuple(sorted(found))


def _combine(subtype: str, expression: exp.Expr) -> str:
    """The strongest transformation on the path: an aggregate over a transformation over an identity."""
    if subtype == AGGREGATION or not isinstance(expression, exp.Expr) or isinstance(expression, exp.Table):
        return subtype
    value = expression.unalias() if isinstance(expression, exp.Alias) else expression
    if isinstance(value, exp.Column | exp.Table | exp.Select | exp.Subquery | exp.SetOperation):
        return subtype
    if value.find(exp.AggFunc) is not None:
        return AGGREGATION
    return TRANSFORMATION


def _indirect(qualified: exp.Expr, tables: frozenset[str]) -> tuple[SourceColumn, ...]:
    found: set[SourceColumn] = set()
    for scope in traverse_scope(qualified):
        sources = {alias: table_name(source) for alias, source in scope.sources.items()
                   if isinstance(source, exp.Table)}
        for column in scope.columns:
            table = sources.get(column.table)
            subtype = _clause_of(column, scope)
            if table is not None and table in tables and subtype is not None:
                found.add(SourceColumn(table, column.name, subtype))
    return tuple(sorted(found))


def _clause_of(column: exp.Column, scope: Scope) -> str | None:
    node: exp.Expr | None = column.parent
    while node is not None and node is not scope.expression:
        for kind, subtype in _CLAUSES:
            if isinstance(node, kind):
                return subtype
        node = node.parent
    return None
