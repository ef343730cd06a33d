"""The SHOW statements BI tools send besides the catalog listings (show.py), answered from the gateway's own
catalog and the caller's identity, never from the engine's statistics or grants. Pure.

    SHOW FUNCTIONS [LIKE p]        Superset autocomplete: the functions a query may call (sql/functions.py)
    SHOW CREATE TABLE t            DBeaver: the columns and types the caller sees (masks keep a column's type)
    SHOW STATS FOR t               DBeaver: a query computing the statistics over the caller's secure view,
                                   or, for a caller with a row filter or mask on t, NULLs (`unknown_stats`)
    SHOW GRANTS [ON t]             SELECT on each table the caller may read, as policy decides
    SHOW ROLES | CURRENT ROLES     the caller's groups
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlglot import exp

from gateway.catalog import TableName
from gateway.relations import Column, Row, Table
from gateway.sql.functions import callable_functions
from gateway.types import BOOLEAN, DOUBLE, VARCHAR

Result = tuple[tuple[Column, ...], tuple[Row, ...]]

FUNCTION_COLUMNS = ("Function", "Return Type", "Argument Types", "Function Type", "Deterministic", "Description")
STATS_COLUMNS = ("column_name", "data_size", "distinct_values_count", "nulls_fraction", "row_count", "low_value",
                 "high_value")
GRANT_COLUMNS = ("Grantor", "Grantor Type", "Grantee", "Grantee Type", "Catalog", "Schema", "Table", "Privilege",
                 "Is Grantable", "With Hierarchy")
# Types whose min/max have a meaningful text form (Trino reports low/high values for these only).
_ORDERED_TYPES = ("tinyint", "smallint", "integer", "bigint", "real", "double", "decimal", "date", "timestamp",
                  "time", "varchar", "char")


def like_matcher(pattern: str | None, escape: str | None) -> re.Pattern[str] | None:
    """SQL LIKE (with an optional ESCAPE character) as a regular expression."""
    if pattern is None:
        return None
    parts: list[str] = []
    characters = iter(pattern)
    for character in characters:
        if escape is not None and character == escape:
            parts.append(re.escape(next(characters, "")))
        elif character == "%":
            parts.append(".*")
        elif character == "_":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    return re.compile("".join(parts), re.DOTALL)


def show_functions(like: str | None, escape: str | None) -> Result:
    matcher = like_matcher(like, escape)
    rows = tuple((name, "", "", kind, True, "")
                 for name, kind in callable_functions(dialect="trino")
                 if matcher is None or matcher.fullmatch(name))
    kinds = {"Deterministic": BOOLEAN}
    return tuple(Column(c, kinds.get(c, VARCHAR)) for c in FUNCTION_COLUMNS), rows


def show_create_table(name: TableName, table: Table) -> Result:
    columns = ",\n".join(f"   {_quote(c.name)} {c.type.display()}"
                         + (f" COMMENT '{_escape(c.comment)}'" if c.comment else "") for c in table.columns)
    keyword = "VIEW" if table.kind == "VIEW" else "TABLE"
    text = f"CREATE {keyword} {name.catalog}.{name.schema}.{_quote(name.table)} (\n{columns}\n)"
    if table.comment:
        text += f"\nCOMMENT '{_escape(table.comment)}'"
    return (Column(f"Create {keyword.title()}", VARCHAR),), ((text,),)


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _escape(text: str) -> str:
    return text.replace("'", "''")


def _stats_columns() -> tuple[Column, ...]:
    kinds = {"data_size": DOUBLE, "distinct_values_count": DOUBLE, "nulls_fraction": DOUBLE, "row_count": DOUBLE}
    return tuple(Column(c, kinds.get(c, VARCHAR)) for c in STATS_COLUMNS)


def unknown_stats(table: Table) -> Result:
    """Statistics that reveal nothing: every value NULL, as Trino answers for a connector without statistics."""
    rows: list[Row] = [(c.name, None, None, None, None, None, None) for c in table.columns]
    rows.append((None, None, None, None, None, None, None))
    return _stats_columns(), tuple(rows)


def stats_query(name: TableName, table: Table) -> exp.Query:
    """A Trino query computing SHOW STATS' rows over `name`: planned like any query, so it reads the table
    through the caller's secure view."""
    source = exp.table_(name.table, db=name.schema, catalog=name.catalog)
    double = exp.DataType.build("double")
    varchar = exp.DataType.build("varchar")

    def null(kind: exp.DataType) -> exp.Expr:
        return exp.cast(exp.Null(), kind)

    branches: list[exp.Select] = []
    for position, column in enumerate(table.columns):
        ref = exp.column(column.name, quoted=True)
        ordered = column.type.name in _ORDERED_TYPES
        nulls = exp.Div(this=exp.cast(exp.func("count_if", ref.is_(exp.Null())), double),
                        expression=exp.func("nullif", exp.cast(exp.Count(this=exp.Star()), double),
                                            exp.Literal.number(0)))
        branches.append(exp.select(
            exp.alias_(exp.Literal.number(position), "position"),
            exp.alias_(exp.Literal.string(column.name), "column_name"),
            exp.alias_(null(double), "data_size"),
            exp.alias_(exp.cast(exp.Count(this=exp.Distinct(expressions=[ref])), double), "distinct_values_count"),
            exp.alias_(nulls, "nulls_fraction"),
            exp.alias_(null(double), "row_count"),
            exp.alias_(exp.cast(exp.Min(this=ref), varchar) if ordered else null(varchar), "low_value"),
            exp.alias_(exp.cast(exp.Max(this=ref), varchar) if ordered else null(varchar), "high_value"),
        ).from_(source.copy()))
    branches.append(exp.select(
        exp.alias_(exp.Literal.number(len(table.columns)), "position"), exp.alias_(null(varchar), "column_name"),
        exp.alias_(null(double), "data_size"), exp.alias_(null(double), "distinct_values_count"),
        exp.alias_(null(double), "nulls_fraction"),
        exp.alias_(exp.cast(exp.Count(this=exp.Star()), double), "row_count"),
        exp.alias_(null(varchar), "low_value"), exp.alias_(null(varchar), "high_value"),
    ).from_(source.copy()))
    union: exp.Query = branches[0]
    for branch in branches[1:]:
        union = exp.union(union, branch, distinct=False)
    return exp.select(*STATS_COLUMNS).from_(union.subquery("stats")).order_by("position")


def show_grants(user: str, tables: Iterable[TableName]) -> Result:
    rows = tuple(("gateway", "USER", user, "USER", t.catalog, t.schema, t.table, "SELECT", "NO", None)
                 for t in sorted(tables))
    return tuple(Column(c, VARCHAR) for c in GRANT_COLUMNS), rows


def show_roles(groups: Iterable[str]) -> Result:
    return (Column("Role", VARCHAR),), tuple((g,) for g in sorted(groups))
