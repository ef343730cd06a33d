"""From a resolved (and, once policies apply, rewritten) Trino query tree to the SQL a backend runs.

Three things happen here, each a pure tree transformation:
- table references become the backend's own names (the catalog part is the gateway's, not the engine's;
  metadata tables map to the metadata engine's local tables, restricted to their catalog);
- functions whose answer is the gateway's, not the engine's (version(), current_user, current_catalog, ...)
  become literals;
- unnamed output columns get Trino's names (_col0, _col1, ...), so clients see what Trino would send.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from gateway.catalog import TableName
from gateway.metadata import catalog_column, local_name
from gateway.sql.resolve import ResolvedQuery


@dataclass(frozen=True)
class SessionValues:
    """Values of the session functions, as Trino would answer them for this query."""

    user: str
    version: str
    catalog: str | None
    schema: str | None
    time_zone: str


def to_backend_sql(query: ResolvedQuery, *, dialect: str, session: SessionValues, metadata: bool) -> str:
    tree: exp.Expr = query.tree.copy()
    tree = _rename_tables(tree, metadata=metadata)
    tree = _session_functions(tree, session)
    tree = name_output_columns(tree)
    return tree.sql(dialect=dialect, comments=False)


def _table_name(table: exp.Table) -> TableName:
    return TableName(table.catalog, table.db, table.name)


def _rename_tables(tree: exp.Expr, *, metadata: bool) -> exp.Expr:
    def rename(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Table) or not node.args.get("catalog"):
            return node
        name = _table_name(node)
        if not metadata:
            renamed = node.copy()
            renamed.set("catalog", None)
            return renamed
        local, restrict_to = local_name(name)
        alias = node.alias or name.table
        inner = exp.select("*").from_(exp.to_table(local))
        column = catalog_column(name)
        if restrict_to is not None and column is not None:
            inner = inner.where(exp.column(column).eq(exp.Literal.string(restrict_to)))
        return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias)))

    return tree.transform(rename, copy=False)


def _session_functions(tree: exp.Expr, session: SessionValues) -> exp.Expr:
    def literal(value: str | None) -> exp.Expr:
        return exp.Null() if value is None else exp.Literal.string(value)

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.CurrentUser):
            return literal(session.user)
        if isinstance(node, exp.CurrentCatalog):
            return literal(session.catalog)
        if isinstance(node, exp.CurrentSchema):
            return literal(session.schema)
        if isinstance(node, exp.CurrentVersion):
            return literal(session.version)
        if isinstance(node, exp.CurrentTimezone):
            return literal(session.time_zone)
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in (
            "current_user", "current_catalog", "current_schema"
        ) and not node.this.quoted:
            return literal({"current_user": session.user, "current_catalog": session.catalog,
                            "current_schema": session.schema}[node.name.lower()])
        return node

    return tree.transform(replace, copy=False)


def name_output_columns(tree: exp.Expr) -> exp.Expr:
    """Give unnamed output expressions Trino's names (_col0, ...). Set operations take the first branch's
    names, so only the leftmost SELECT is renamed."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if isinstance(select, exp.Subquery):
        return tree
    if not isinstance(select, exp.Select):
        return tree
    renamed: list[exp.Expr] = []
    for index, projection in enumerate(select.expressions):
        if isinstance(projection, exp.Alias | exp.Column | exp.Star) or (
            isinstance(projection, exp.Dot) and isinstance(projection.expression, exp.Star)
        ):
            renamed.append(projection)
        else:
            renamed.append(exp.alias_(projection, f"_col{index}"))
    select.set("expressions", renamed)
    return tree
