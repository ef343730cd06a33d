"""From a resolved (and policy-rewritten) Trino query tree to the SQL a backend runs.

Pure tree transformations, in order:
- table references become the backend's own names (the catalog part is the gateway's, not the engine's);
  metadata tables become the metadata engine's local tables, restricted to their catalog and to the tables
  the caller may read;
- functions whose answer is the gateway's, not the engine's (version(), current_user, current_catalog, ...)
  become literals;
- `/` gets Trino's semantics on DuckDB (integer division, DIVISION_BY_ZERO; sql/trino_semantics.py);
- Trino's types and literals become the backend's, or NOT_SUPPORTED naming the type (sql/trino_types.py);
- unnamed output columns get Trino's names (_col0, _col1, ...), so clients see what Trino would send
  (PostgreSQL clients: the names PostgreSQL gives them: `count`, `upper`, `?column?`);
- on Trino backends the gateway's own names (`__gw_*`) get a prefix no identifier of the statement starts
  with: another gateway downstream refuses `__gw_` names in what it receives, as any gateway does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from gateway.catalog import INFORMATION_SCHEMA, TableName
from gateway.metadata import catalog_column, local_columns, local_name
from gateway.relations import Table
from gateway.sql.barrier import RESERVED_PREFIX, fenced
from gateway.sql.dialects import quotes_every_identifier
from gateway.sql.trino_semantics import trino_arithmetic
from gateway.sql.trino_types import trino_types


@dataclass(frozen=True)
class SessionValues:
    """Values of the session functions, as Trino would answer them for this query."""

    user: str
    version: str
    catalog: str | None
    schema: str | None
    time_zone: str
    postgres_names: bool = False  # unnamed output columns named as PostgreSQL names them, not _colN


@dataclass(frozen=True)
class Visibility:
    """The data tables one caller may read; metadata shows these and nothing else."""

    tables: frozenset[TableName]
    schemas: frozenset[tuple[str, str]]
    catalogs: frozenset[str]

    @classmethod
    def of(cls, tables: frozenset[TableName]) -> Visibility:
        return cls(tables=tables, schemas=frozenset((t.catalog, t.schema) for t in tables),
                   catalogs=frozenset(t.catalog for t in tables))


# metadata table -> the columns naming (catalog, schema, table) of each row, as far as the table has them
_VISIBILITY_COLUMNS: dict[tuple[str, str], tuple[str, ...]] = {
    (INFORMATION_SCHEMA, "schemata"): ("catalog_name", "schema_name"),
    (INFORMATION_SCHEMA, "tables"): ("table_catalog", "table_schema", "table_name"),
    (INFORMATION_SCHEMA, "columns"): ("table_catalog", "table_schema", "table_name"),
    (INFORMATION_SCHEMA, "views"): ("table_catalog", "table_schema", "table_name"),
    ("jdbc", "catalogs"): ("table_cat",),
    ("jdbc", "schemas"): ("table_catalog", "table_schem"),
    ("jdbc", "tables"): ("table_cat", "table_schem", "table_name"),
    ("jdbc", "columns"): ("table_cat", "table_schem", "table_name"),
    ("metadata", "catalogs"): ("catalog_name",),
    ("metadata", "table_comments"): ("catalog_name", "schema_name", "table_name"),
    ("metadata", "materialized_views"): ("catalog_name", "schema_name", "name"),
    ("metadata", "table_properties"): ("catalog_name",),
    ("metadata", "column_properties"): ("catalog_name",),
    ("metadata", "schema_properties"): ("catalog_name",),
    ("metadata", "materialized_view_properties"): ("catalog_name",),
}


def to_backend_sql(tree: exp.Query, *, dialect: str, session: SessionValues, metadata: Visibility | None,
                   backend_catalog: str | None = None, tables: Callable[[TableName], Table | None] | None = None,
                   copy: bool = True, schema: Mapping[str, Any] | None = None,
                   output_names: tuple[str, ...] | None = None) -> str:
    """`metadata` is None for a backend query, else the caller's visibility for a metadata query.
    `backend_catalog` is the engine's own name for the table's catalog (None: leave it out). `tables` looks
    up a table's description, for engines whose names are not all lower case. With `copy=False` the tree is
    transformed in place (for a caller that owns it)."""
    result: exp.Expr = tree.copy() if copy else tree
    # from the statement as written, before the transformations below turn functions into others
    unnamed = [postgres_column_name(p) for p in _leftmost_select(result).expressions] if session.postgres_names \
        else None
    if dialect in ("duckdb", "postgres"):  # first: operands are typed by the catalog's (gateway) table names
        result = trino_arithmetic(result, schema=schema, dialect=dialect)
    result = trino_types(result, dialect=dialect)
    result = _rename_tables(result, metadata=metadata, backend_catalog=backend_catalog, tables=tables)
    result = _session_functions(result, session)
    result = name_output_columns(result, unnamed=unnamed)
    if output_names is not None:
        result = _rename_outputs(result, output_names)
    if dialect == "trino":
        result = _unreserved_internal_names(result)
    return result.sql(dialect=dialect, comments=False, copy=False,  # the generator copies by default
                      identify=quotes_every_identifier(dialect))


def _unreserved_internal_names(tree: exp.Expr) -> exp.Expr:
    """`__gw_x` -> `gwN_x`, with the smallest N no identifier of `tree` starts `gwN_` with (so no renamed name
    can meet one of the statement's own)."""
    identifiers = list(tree.find_all(exp.Identifier))
    internal = [i for i in identifiers if i.name.lower().startswith(RESERVED_PREFIX)]
    if not internal:
        return tree
    names = {i.name.lower() for i in identifiers}
    n = 0
    while any(name.startswith(f"gw{n}_") for name in names):
        n += 1
    for identifier in internal:
        identifier.set("this", f"gw{n}_{identifier.name[len(RESERVED_PREFIX):]}")
    return tree


def _table_name(table: exp.Table) -> TableName:
    return TableName(table.catalog, table.db, table.name)


def _visible_rows(name: TableName, visible: Visibility) -> exp.Expr | None:
    """A condition keeping the rows of metadata table `name` that describe visible things."""
    columns = _VISIBILITY_COLUMNS.get((name.schema, name.table))
    if columns is None:
        return None
    # Metadata tables themselves are always listed (every Trino catalog shows its information_schema).
    if len(columns) == 1:
        allowed = sorted(visible.catalogs | {"system"})
        values: list[tuple[str, ...]] = [(c,) for c in allowed]
    elif len(columns) == 2:
        values = sorted(visible.schemas)
    else:
        values = sorted((t.catalog, t.schema, t.table) for t in visible.tables)
    condition: exp.Expr
    if not values:
        condition = exp.false()
    elif len(columns) == 1:
        condition = exp.column(columns[0]).isin(*[exp.Literal.string(v[0]) for v in values])
    else:
        key = exp.Tuple(expressions=[exp.column(c) for c in columns])
        condition = key.isin(*[exp.Tuple(expressions=[exp.Literal.string(p) for p in v]) for v in values])
    if len(columns) >= 2:
        # rows about the metadata tables themselves
        metadata_rows: exp.Expr = exp.column(columns[1]).eq(exp.Literal.string(INFORMATION_SCHEMA))
        if columns[0] in ("table_cat", "catalog_name", "table_catalog"):
            metadata_rows = exp.or_(metadata_rows, exp.column(columns[0]).eq(exp.Literal.string("system")))
        condition = exp.or_(condition, metadata_rows)
    return condition


def _remote_table(node: exp.Table, table: Table) -> exp.Expr:
    """A table whose engine spelling is not lower case, as a subquery renaming its columns to the lower-case
    names every other part of the query uses (Trino folds them; the engine would not match them)."""
    schema, name = table.remote_name or (table.schema, table.name)
    source = exp.Table(this=exp.to_identifier(name, quoted=True), db=exp.to_identifier(schema, quoted=True),
                       catalog=node.args.get("catalog"))
    if not any(c.remote_name is not None for c in table.columns):
        if node.args.get("alias"):
            source.set("alias", node.args["alias"])
        return source
    projections = [exp.alias_(exp.column(exp.to_identifier(c.remote_name or c.name, quoted=True)),
                              exp.to_identifier(c.name, quoted=True)) for c in table.columns]
    alias = node.alias or table.name
    return exp.Subquery(this=exp.select(*projections).from_(source),
                        alias=exp.TableAlias(this=exp.to_identifier(alias)))


def _rename_tables(tree: exp.Expr, *, metadata: Visibility | None, backend_catalog: str | None,
                   tables: Callable[[TableName], Table | None] | None) -> exp.Expr:
    catalog = exp.to_identifier(backend_catalog, quoted=True) if backend_catalog is not None else None

    def rename(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Table) or not node.args.get("catalog"):
            return node
        name = _table_name(node)
        if metadata is None:
            node.set("catalog", catalog.copy() if catalog is not None else None)
            described = tables(name) if tables is not None else None
            return _remote_table(node, described) if described is not None and described.renamed else node
        local, restrict_to = local_name(name)
        alias = node.alias or name.table
        conditions: list[exp.Expr] = []
        column = catalog_column(name)
        if restrict_to is not None and column is not None:
            conditions.append(exp.column(column).eq(exp.Literal.string(restrict_to)))
        visible = _visible_rows(name, metadata)
        if visible is not None:
            conditions.append(visible)
        # Rows about tables the caller may not see are hidden behind the same barrier as filtered rows.
        columns = local_columns(name)
        inner = fenced(exp.to_table(local), columns, [(c, exp.column(exp.to_identifier(c, quoted=True)))
                                                      for c in columns],
                       exp.and_(*conditions) if conditions else None)
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
        if isinstance(node, exp.Column) and not node.table and not node.this.quoted and node.name.lower() in (
            "current_user", "current_catalog", "current_schema"
        ):
            return literal({"current_user": session.user, "current_catalog": session.catalog,
                            "current_schema": session.schema}[node.name.lower()])
        return node

    return tree.transform(replace, copy=False)


def _rename_outputs(tree: exp.Expr, names: tuple[str, ...]) -> exp.Expr:
    """The result columns under exactly `names` (quoted: identifier normalisation lowercased the aliases)."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if isinstance(select, exp.Select) and len(select.expressions) == len(names):
        select.set("expressions", [exp.alias_(p.unalias() if isinstance(p, exp.Alias) else p, name, quoted=True)
                                   for p, name in zip(select.expressions, names, strict=True)])
    return tree


def _leftmost_select(tree: exp.Expr) -> exp.Expr:
    """The SELECT whose output names a statement's result (set operations take the first branch's)."""
    while isinstance(tree, exp.SetOperation):
        tree = tree.this
    return tree


def postgres_column_name(projection: exp.Expr) -> str:
    """The name PostgreSQL gives an unnamed output expression (its FigureColname): a column's own name, a
    function call's name (`count`, `upper`), a cast's operand's name, `case`; anything else `?column?`.
    Casts reach here as the backend's types rewrote them, so they are not always named as PostgreSQL would."""
    if isinstance(projection, exp.Column):
        return projection.name
    if isinstance(projection, exp.Cast | exp.TryCast):
        return postgres_column_name(projection.this)
    if isinstance(projection, exp.Case):
        return "case"
    if isinstance(projection, exp.Anonymous):
        return projection.name.lower()
    if isinstance(projection, exp.Func):
        head = projection.sql(dialect="postgres").split("(", 1)[0].lower()
        if head.replace("_", "").isalnum():
            return head
    return "?column?"


def name_output_columns(tree: exp.Expr, *, unnamed: Sequence[str] | None = None) -> exp.Expr:
    """Give unnamed output expressions Trino's names (_col0, ...), or the names in `unnamed` by position
    (PostgreSQL's, see `postgres_column_name`). Only the leftmost SELECT of a set operation is renamed."""
    select = _leftmost_select(tree)
    if not isinstance(select, exp.Select):
        return tree
    renamed: list[exp.Expr] = []
    for index, projection in enumerate(select.expressions):
        if isinstance(projection, exp.Alias | exp.Column | exp.Star) or (
            isinstance(projection, exp.Dot) and isinstance(projection.expression, exp.Star)
        ):
            renamed.append(projection)
        elif unnamed is not None and index < len(unnamed):
            renamed.append(exp.alias_(projection, unnamed[index], quoted=True))
        else:
            renamed.append(exp.alias_(projection, f"_col{index}"))
    select.set("expressions", renamed)
    return tree
