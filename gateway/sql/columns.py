"""Which columns of which base tables a query reads: `columns_read(tree, schema)`, for the audit trail.

Pure and best-effort: the query is already resolved (every base table fully qualified), so each column is
traced through sqlglot's scopes to the table it comes from; `*` means every column of the tables it covers.
A column that cannot be traced is attributed to every table of its scope that has a column of that name.
This never decides access (the rewrite does); it only describes it.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import traverse_scope

from gateway.sql.analyze import table_name

# catalog -> schema -> table -> {column: type}
Catalog = Mapping[str, Mapping[str, Mapping[str, Mapping[str, str]]]]


def columns_read(tree: exp.Expr, schema: Catalog) -> dict[str, tuple[str, ...]]:
    """catalog.schema.table -> sorted column names, for every base table of `tree` (possibly with none)."""
    found: dict[str, set[str]] = {}
    try:
        for scope in traverse_scope(tree):
            tables = {alias: table_name(source) for alias, source in scope.sources.items()
                      if isinstance(source, exp.Table)}
            for name in tables.values():
                found.setdefault(name, set())
            for column in scope.columns:
                if column.table:
                    traced = tables.get(column.table)
                    if traced is not None:
                        found[traced].add(column.name)
                    continue
                for name in tables.values():
                    if column.name in _columns(schema, name):
                        found[name].add(column.name)
            select = scope.expression
            if isinstance(select, exp.Select):
                for projection in select.expressions:
                    if isinstance(projection, exp.Star):
                        for name in tables.values():
                            found[name].update(_columns(schema, name))
                    elif isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                        starred = tables.get(projection.table)
                        if starred is not None:
                            found[starred].update(_columns(schema, starred))
    except (SqlglotError, RecursionError, KeyError, ValueError):
        return {name: tuple(sorted(columns)) for name, columns in found.items()}
    return {name: tuple(sorted(columns)) for name, columns in sorted(found.items())}


def _columns(schema: Catalog, name: str) -> Mapping[str, str]:
    catalog, db, table = name.split(".", 2)
    return schema.get(catalog, {}).get(db, {}).get(table, {})


def tables_named(sql: str, *, catalog: str | None, schema: str | None) -> list[str]:
    """Best effort, for the audit record of a statement that failed before it was resolved (a denial, an
    unknown table): the table names it mentions, qualified with the session's catalog and schema."""
    try:
        tree = sqlglot.parse_one(sql, read="trino")
    except (SqlglotError, RecursionError, ValueError):
        return []
    names = []
    for table in tree.find_all(exp.Table):
        parts = [p.name.lower() for p in table.parts]
        if len(parts) == 1 and schema is not None:
            parts.insert(0, schema)
        if len(parts) == 2 and catalog is not None:
            parts.insert(0, catalog)
        names.append(".".join(parts))
    return sorted(set(names))
