"""SHOW and DESCRIBE, as the queries over metadata tables that Trino itself runs for them.

Pure: each statement becomes a query tree over information_schema / system tables, which then takes the
same path as any query (resolution, policies, execution), so what SHOW lists is what SELECT can see.
"""

from __future__ import annotations

from sqlglot import exp

from gateway.catalog import CatalogSnapshot, TableName
from gateway.errors import NotFound, UserError
from gateway.sql.statements import Show


def _like(column: str, show: Show) -> exp.Expr | None:
    if show.like is None:
        return None
    pattern: exp.Expr = exp.Like(this=exp.column(column), expression=exp.Literal.string(show.like))
    if show.escape is not None:
        pattern = exp.Escape(this=pattern, expression=exp.Literal.string(show.escape))
    return pattern


def _table(catalog: str, schema: str, name: str) -> exp.Table:
    return exp.table_(name, db=schema, catalog=catalog)


def _where(query: exp.Select, *conditions: exp.Expr | None) -> exp.Select:
    for condition in conditions:
        if condition is not None:
            query = query.where(condition)
    return query


def _need_catalog(catalog: str | None, snapshot: CatalogSnapshot) -> str:
    if catalog is None:
        raise UserError("Catalog must be specified when session catalog is not set", error_name="MISSING_CATALOG_NAME")
    if not snapshot.has_catalog(catalog):
        raise NotFound(f"Catalog '{catalog}' does not exist", error_name="CATALOG_NOT_FOUND")
    return catalog


def _need_schema(catalog: str, schema: str | None, snapshot: CatalogSnapshot) -> str:
    if schema is None:
        raise UserError("Schema must be specified when session schema is not set", error_name="MISSING_SCHEMA_NAME")
    if not snapshot.has_schema(catalog, schema):
        raise NotFound(f"Schema '{schema}' does not exist", error_name="SCHEMA_NOT_FOUND")
    return schema


def show_query(show: Show, *, catalog: str | None, schema: str | None, snapshot: CatalogSnapshot) -> exp.Query:
    """The query that answers `show` (for SHOW CATALOGS|SCHEMAS|TABLES|COLUMNS and DESCRIBE)."""
    if show.what == "CATALOGS":
        query = exp.select(exp.alias_("catalog_name", "Catalog", quoted=True)).from_(
            _table("system", "metadata", "catalogs"))
        return _where(query, _like("catalog_name", show)).order_by("1")
    if show.what == "SCHEMAS":
        target = _need_catalog(show.target[0] if show.target else catalog, snapshot)
        query = exp.select(exp.alias_("schema_name", "Schema", quoted=True)).from_(
            _table(target, "information_schema", "schemata"))
        return _where(query, _like("schema_name", show)).order_by("1")
    if show.what == "TABLES":
        parts = list(show.target)
        in_schema = parts[-1] if parts else schema
        in_catalog = _need_catalog(parts[0] if len(parts) == 2 else catalog, snapshot)
        in_schema = _need_schema(in_catalog, in_schema, snapshot)
        query = exp.select(exp.alias_("table_name", "Table", quoted=True)).from_(
            _table(in_catalog, "information_schema", "tables"))
        return _where(query, exp.column("table_schema").eq(exp.Literal.string(in_schema)),
                      _like("table_name", show)).order_by("1")
    if show.what == "COLUMNS":
        name = describe_target(show.target, catalog=catalog, schema=schema, snapshot=snapshot)
        query = exp.select(
            exp.alias_("column_name", "Column", quoted=True),
            exp.alias_("data_type", "Type", quoted=True),
            exp.alias_(exp.func("coalesce", exp.column("extra_info"), exp.Literal.string("")), "Extra", quoted=True),
            exp.alias_(exp.func("coalesce", exp.column("comment"), exp.Literal.string("")), "Comment", quoted=True),
        ).from_(_table(name.catalog, "information_schema", "columns"))
        return _where(query, exp.column("table_schema").eq(exp.Literal.string(name.schema)),
                      exp.column("table_name").eq(exp.Literal.string(name.table)),
                      _like("column_name", show)).order_by("ordinal_position")
    raise UserError(f"SHOW {show.what} has no query form")


def describe_target(parts: tuple[str, ...], *, catalog: str | None, schema: str | None,
                    snapshot: CatalogSnapshot) -> TableName:
    """The existing table SHOW COLUMNS / DESCRIBE names, resolved with the session defaults."""
    names = list(parts)
    if len(names) == 1:
        names.insert(0, _need_schema(_need_catalog(catalog, snapshot), schema, snapshot))
    if len(names) == 2:
        names.insert(0, _need_catalog(catalog, snapshot))
    name = TableName(*names[-3:])
    _need_schema(_need_catalog(name.catalog, snapshot), name.schema, snapshot)
    if snapshot.table(name) is None:
        raise NotFound(f"Table '{name}' does not exist", error_name="TABLE_NOT_FOUND")
    return name
