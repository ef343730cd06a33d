"""The security barrier: a relation whose hidden rows no user expression can observe, on any engine.

A secure view is `SELECT <columns or masks> FROM t WHERE <row filter>`, but no engine promises to evaluate
the view's WHERE before a condition the user writes above it: optimizers push the user's conjuncts down to
the scan and join the filter's semi-join later (DuckDB does, so `CAST(o_comment AS INTEGER)` failed on rows
the filter removes and the error quoted them). PostgreSQL solves this inside its planner (`security_barrier`
views, only LEAKPROOF functions pushed in); Trino, DuckDB and Snowflake have no equivalent, and ordering
that relies on an optimizer is not a guarantee.

So the barrier is built into the data, not the plan. The view computes the row filter once, as a hidden
column, and every column it exposes is guarded by it:

    SELECT CASE WHEN __gw_visible THEN c1 END AS c1, CASE WHEN __gw_visible THEN <mask(c2)> END AS c2, ...
    FROM (SELECT c1, c2, ..., (<row filter>) AS __gw_visible FROM cat.db.t) AS __gw_rows
    WHERE __gw_visible

Whatever order an engine evaluates things in, an expression the user wrote can only ever see a column's
value on a row where the filter holds; on every other row it sees NULL in every column, so its outcome
(a value, an error, no error) is the same for every hidden row and says nothing about any of them. The
hidden column is not projected, so the user cannot name it. What remains observable is the same as in
PostgreSQL: that hidden rows exist at all (an error raised on an all-NULL row) and timing.

The price is that a condition on a guarded column cannot be pushed into the scan (zone maps, indexes) by
the engine. Copying "leak-proof" conditions (a column compared with a constant) inside the barrier, as
PostgreSQL pushes LEAKPROOF quals, would give that back but is not safe here: the pushed condition would
decide which hidden rows reach the user's expressions as all-NULL rows, so `o_orderkey = 1 AND <fails on
NULL>` would tell a hidden order 1 from a missing one. The barrier therefore leaves every user condition
above it (load_tests/barrier.py measures what that costs).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

VISIBLE = "__gw_visible"
ROWS = "__gw_rows"
RESERVED_PREFIX = "__gw_"  # names the gateway generates; refused in client SQL so none can be forged
_INLINING_DIALECTS = frozenset({"postgres"})  # engines that pull a subquery up into its parent


def fenced(
    source: exp.Table,
    raw_columns: Sequence[str],
    projections: Sequence[tuple[str, exp.Expr]],
    visible: exp.Expr | None,
    *,
    dialect: str = "duckdb",
) -> exp.Select:
    """A SELECT over `source` exposing `projections` (name, expression over the raw columns), keeping only
    rows where `visible` holds, with every exposed value guarded by it. `visible` None: all rows, no
    guard needed (masks alone hide values by projection). On PostgreSQL the inner SELECT gets `OFFSET 0`,
    its documented optimisation fence: without it the planner pulls the subquery up and copies the filter
    (a semi-join) into every guarded column, evaluating it once per column instead of once per row."""
    if visible is None:
        return exp.select(*[_named(expression, name) for name, expression in projections]).from_(source)
    raw = [exp.column(exp.to_identifier(name, quoted=True)) for name in raw_columns]
    rows = exp.select(*raw, exp.alias_(exp.paren(visible, copy=False), _quoted(VISIBLE))).from_(source)
    if dialect in _INLINING_DIALECTS:
        rows = rows.offset(0)
    guard = exp.column(_quoted(VISIBLE))
    guarded = [
        exp.alias_(exp.Case(ifs=[exp.If(this=guard.copy(), true=expression)]), _quoted(name))
        for name, expression in projections
    ]
    return (
        exp.select(*guarded)
        .from_(exp.Subquery(this=rows, alias=exp.TableAlias(this=_quoted(ROWS))))
        .where(guard.copy())
    )


def fenced_source(select: exp.Select) -> exp.Table:
    """The base table a `fenced` SELECT reads (where a TABLESAMPLE of the original reference belongs)."""
    source = select.args["from_"].this
    if isinstance(source, exp.Subquery):
        inner = source.this
        assert isinstance(inner, exp.Select)
        source = inner.args["from_"].this
    assert isinstance(source, exp.Table)
    return source


def is_reserved(name: str) -> bool:
    return name.lower().startswith(RESERVED_PREFIX)


def _named(expression: exp.Expr, name: str) -> exp.Expr:
    if isinstance(expression, exp.Column) and expression.name == name:
        return expression
    return exp.alias_(expression, _quoted(name))


def _quoted(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)
