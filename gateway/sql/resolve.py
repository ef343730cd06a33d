"""Name resolution: every table a query reads, as catalog.schema.table, checked against the catalog.

A pure function of (tree, session defaults, catalog snapshot). CTE names, derived tables and VALUES are not
tables; a reference with a schema part is always a real table, even when a CTE has the same name, so a CTE
can never hide a protected table. Anything that cannot be classified is refused (fail closed).

The engine must bind every name exactly as the gateway did, or it runs something nobody authorized (a CTE
reference the engine takes for its own catalog view, as DuckDB does with the anchor of a recursive CTE).
So the gateway leaves the engine nothing to resolve: base tables become catalog.schema.table, and every CTE
and every reference the gateway bound to it get a name of the gateway's own (`__gw_cte_N`), which no
catalog, search path or user name can match (client SQL may not use the `__gw_` prefix at all).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from gateway.catalog import SYSTEM_CATALOG, CatalogSnapshot, TableName
from gateway.errors import NotFound, NotSupported, UserError
from gateway.sql.analyze import base_tables, cte_of, traverse
from gateway.sql.barrier import RESERVED_PREFIX, is_reserved

METADATA_TARGET = SYSTEM_CATALOG


@dataclass(frozen=True)
class ResolvedQuery:
    """A query whose base tables are fully qualified (lower case), and where it must run."""

    tree: exp.Query
    tables: tuple[TableName, ...]
    target: str  # a backend's catalog, or METADATA_TARGET for the gateway's own metadata tables


def _location(node: exp.Expr) -> dict[str, int]:
    identifier = node.this if isinstance(node, exp.Table) else node
    meta = getattr(identifier, "meta", None) or {}
    return {"line": meta["line"], "column": meta["col"]} if "line" in meta and "col" in meta else {}


def _prefix(node: exp.Expr) -> str:
    where = _location(node)
    return f"line {where['line']}:{where['column']}: " if where else ""


def resolve_query(tree: exp.Query, *, catalog: str | None, schema: str | None,
                  snapshot: CatalogSnapshot, default_catalog: str) -> ResolvedQuery:
    """Qualify every base table of `tree` in place (catalog.schema.table, lower case), check each exists,
    and decide the one catalog the query runs in."""
    _fold_identifiers(tree)
    names: list[TableName] = []
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Dot):
            raise UserError(f"{_prefix(table)}too many dots in table name {table.sql(dialect='trino')!r}",
                            error_name="SYNTAX_ERROR")
        if not isinstance(table.this, exp.Identifier):
            raise NotSupported(f"{_prefix(table)}table functions are not supported")
    for lateral in tree.find_all(exp.Lateral):
        # Only subqueries: a function here (DuckDB's histogram(tbl, col)) can read a table by name.
        if not isinstance(lateral.this, exp.Subquery | exp.Query):
            raise NotSupported(f"{_prefix(lateral)}LATERAL takes a subquery; table functions are not supported")
    scopes = traverse(tree)
    _isolate_ctes(scopes)
    for table in base_tables(tree, scopes):
        # With no session catalog, schema.table names a table of the default (first) catalog.
        name = _qualify(table, catalog=catalog or default_catalog, schema=schema)
        _check_exists(table, name, snapshot)
        names.append(name)
    _unqualify_columns(scopes)
    targets = sorted({METADATA_TARGET if n.is_metadata else n.catalog for n in names})
    if len(targets) > 1:
        raise NotSupported(f"a query can read from one catalog only; this one reads {' and '.join(targets)}")
    if targets:
        target = targets[0]
    else:
        target = catalog if catalog is not None and catalog != SYSTEM_CATALOG and snapshot.has_catalog(
            catalog) else default_catalog
    return ResolvedQuery(tree=tree, tables=tuple(dict.fromkeys(names)), target=target)


def _fold_identifiers(tree: exp.Expr) -> None:
    """Trino identifiers are case-insensitive, quoted or not: fold them all before scopes are analysed, so
    `WITH "Orders" AS (...) ... FROM orders` is read the way Trino reads it."""
    for identifier in tree.find_all(exp.Identifier):
        name = identifier.this
        if isinstance(name, str) and name != name.lower():
            identifier.set("this", name.lower())
        if isinstance(name, str) and is_reserved(name):
            raise UserError(f"{_prefix(identifier)}names starting with {RESERVED_PREFIX!r} are reserved by the "
                            "gateway", error_name="SYNTAX_ERROR", **_location(identifier))


def _isolate_ctes(scopes: list[Scope]) -> None:
    """Rename every CTE and each reference bound to it to `__gw_cte_N` (references keep their old name as
    alias, so columns qualified by it still resolve)."""
    renamed: dict[int, str] = {}
    for scope in scopes:
        for table in scope.tables:
            cte = cte_of(scope, table)
            if cte is None:
                continue
            if _in_anchor(table, cte):
                raise UserError(f"{_prefix(table)}recursive reference to query {cte.alias} must not appear within "
                                "its non-recursive term", error_name="SYNTAX_ERROR", **_location(table))
            name = renamed.setdefault(id(cte), f"{RESERVED_PREFIX}cte_{len(renamed)}")
            if not table.args.get("alias"):
                table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
            table.set("this", exp.to_identifier(name))
    for cte in scopes[-1].expression.find_all(exp.CTE) if scopes else ():  # the last scope is the root's
        alias = cte.args.get("alias")
        new = renamed.get(id(cte))
        if alias is not None and new is not None:
            alias.set("this", exp.to_identifier(new))


def _in_anchor(table: exp.Table, cte: exp.CTE) -> bool:
    """Whether `table` sits in the non-recursive term of recursive CTE `cte`."""
    body = cte.this
    if not isinstance(body, exp.SetOperation):
        return False
    anchor = body.this
    node: exp.Expr | None = table
    while node is not None and node is not cte:
        if node is anchor:
            return True
        node = node.parent
    return False


def _unqualify_columns(scopes: list[Scope]) -> None:
    """`tpch.orders.o_orderkey` (what SQLAlchemy Core writes) names the column through its table's own name;
    after the rewrite that table may be a secure view under that name, so the schema and catalog parts go."""
    for scope in scopes:
        for column in scope.columns:
            if not column.args.get("db"):
                continue
            source = scope.sources.get(column.table)
            if not isinstance(source, exp.Table) or source.alias:
                continue  # an alias hides the table's own name, as in Trino: left for the engine to refuse
            parts = {"db": source.db, "catalog": source.catalog}
            if all(column.args.get(key) is None or column.text(key) == value for key, value in parts.items()):
                column.set("db", None)
                column.set("catalog", None)


def _qualify(table: exp.Table, *, catalog: str | None, schema: str | None) -> TableName:
    parts = [p.name.lower() for p in table.parts]
    if len(parts) > 3:
        raise UserError(f"{_prefix(table)}too many dots in table name {table.sql(dialect='trino')!r}",
                        error_name="SYNTAX_ERROR", **_location(table))
    if len(parts) == 1:
        if schema is None:
            raise UserError(f"{_prefix(table)}Schema must be specified when session schema is not set",
                            error_name="MISSING_SCHEMA_NAME", **_location(table))
        parts.insert(0, schema)
    if len(parts) == 2:
        if catalog is None:
            raise UserError(f"{_prefix(table)}Catalog must be specified when session catalog is not set",
                            error_name="MISSING_CATALOG_NAME", **_location(table))
        parts.insert(0, catalog)
    name = TableName(*parts)
    # Trino folds identifiers to lower case, quoted or not.
    table.set("this", exp.to_identifier(name.table))
    table.set("db", exp.to_identifier(name.schema))
    table.set("catalog", exp.to_identifier(name.catalog))
    return name


def _check_exists(node: exp.Table, name: TableName, snapshot: CatalogSnapshot) -> None:
    where = _location(node)
    if not snapshot.has_catalog(name.catalog):
        raise NotFound(f"{_prefix(node)}Catalog '{name.catalog}' does not exist", error_name="CATALOG_NOT_FOUND",
                       **where)
    if not snapshot.has_schema(name.catalog, name.schema):
        raise NotFound(f"{_prefix(node)}Schema '{name.schema}' does not exist", error_name="SCHEMA_NOT_FOUND",
                       **where)
    if snapshot.table(name) is None:
        raise NotFound(f"{_prefix(node)}Table '{name}' does not exist", error_name="TABLE_NOT_FOUND", **where)
