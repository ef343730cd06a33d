"""Trino's arithmetic where DuckDB's differs and users would notice, as a pure tree -> tree step of generation.

    integer / integer    Trino: integer division, truncated (5 / 2 = 2)      -> DuckDB `//` (also truncates)
    x / 0, x % 0         Trino: DIVISION_BY_ZERO for exact types               -> `//`, `%` raise natively; `/`
                         (DuckDB `/` answers inf, or NULL)                        gets a divisor that raises
                                                                                  "Division by zero" when 0
    double / 0           Trino: Infinity (IEEE)                                -> left alone when the divisor
                                                                                  is known to be double/real

Operand types come from sqlglot's type annotation with the catalog's column types; where a type stays
unknown the division is treated as exact (an error where Trino might answer Infinity, never a silent inf
where Trino raises). Integer overflow (`bigint addition overflow`) and invalid casts already raise in
DuckDB; their messages are put in Trino's words where DuckDB's errors are translated (backends/duckdb.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types

DIVISION_BY_ZERO = "Division by zero"
_FLOATING = {exp.DType.DOUBLE, exp.DType.FLOAT}


def trino_arithmetic(tree: exp.Expr, *, schema: Mapping[str, Any] | None = None) -> exp.Expr:
    """Rewrite `/` in place for DuckDB (see the module docstring); returns the tree."""
    # Only divisions the client wrote in Trino SQL (typed); policy SQL is the backend's dialect, as written.
    divisions = [node for node in tree.find_all(exp.Div) if node.args.get("typed")]
    if not divisions:
        return tree
    annotate_types(tree, schema=dict(schema) if schema else None, dialect="trino")
    for division in divisions:
        left, right = division.this, division.expression
        if _is_integer(left) and _is_integer(right):
            division.replace(exp.IntDiv(this=left, expression=right))
        elif not _is_floating(right) and not _is_floating(left):
            guarded = exp.Case(ifs=[exp.If(this=exp.EQ(this=right.copy(), expression=exp.Literal.number(0)),
                                           true=exp.func("error", exp.Literal.string(DIVISION_BY_ZERO)))],
                               default=right.copy())
            division.replace(exp.Div(this=left, expression=guarded))
    return tree


def _kind(node: exp.Expr) -> exp.DType | None:
    kind = node.type
    return kind.this if isinstance(kind, exp.DataType) else None


def _is_integer(node: exp.Expr) -> bool:
    return _kind(node) in exp.DataType.INTEGER_TYPES


def _is_floating(node: exp.Expr) -> bool:
    while isinstance(node, exp.Neg | exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        return "e" in node.name.lower()  # 1.5 is a decimal in Trino, 1.5e0 a double
    return _kind(node) in _FLOATING
