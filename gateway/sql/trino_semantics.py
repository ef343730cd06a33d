"""Trino's arithmetic where DuckDB's differs and users would notice, as a pure tree -> tree step of generation.

    integer / integer    Trino: integer division, truncated (5 / 2 = 2)      -> DuckDB `//` (also truncates)
    x / 0, x % 0         Trino: DIVISION_BY_ZERO for exact types               -> `//`, `%` raise natively; `/`
                         (DuckDB `/` answers inf, or NULL)                        gets a divisor that raises
                                                                                  "Division by zero" when 0
    double / 0           Trino: Infinity (IEEE)                                -> left alone when the divisor
                                                                                  is known to be double/real
    CAST(s AS integer)   Trino: INVALID_CAST_ARGUMENT unless s is an integer  -> s is checked first (DuckDB
    from a string        literal (DuckDB rounds '1.5' to 2)                       rounds), the cast raises
                                                                                  "Cannot cast '…' to integer"

Operand types come from sqlglot's type annotation with the catalog's column types (on a column-qualified
copy of the tree); where a type stays
unknown the division is treated as exact (an error where Trino might answer Infinity, never a silent inf
where Trino raises). Integer overflow (`bigint addition overflow`) and invalid casts already raise in
DuckDB; their messages are put in Trino's words where DuckDB's errors are translated (backends/duckdb.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify_columns import qualify_columns
from sqlglot.schema import ensure_schema

DIVISION_BY_ZERO = "Division by zero"
INTEGER_TEXT = r"\s*[+-]?[0-9]+\s*"  # what Trino casts to an integer type
_FLOATING = {exp.DType.DOUBLE, exp.DType.FLOAT}


def trino_arithmetic(tree: exp.Expr, *, schema: Mapping[str, Any] | None = None) -> exp.Expr:
    """Rewrite `/` and text-to-integer casts in place for DuckDB (see the module docstring); returns the tree."""
    nodes = _nodes(tree)
    if not nodes:
        return tree
    types = _operand_types(tree, nodes, schema)
    for node, (left, right) in zip(nodes, types, strict=True):
        if isinstance(node, exp.Cast):
            if right in exp.DataType.TEXT_TYPES:
                _check_integer_text(node)
        elif left in exp.DataType.INTEGER_TYPES and right in exp.DataType.INTEGER_TYPES:
            node.replace(exp.IntDiv(this=node.this, expression=node.expression))
        elif not _is_floating(node.expression, right) and not _is_floating(node.this, left):
            divisor = node.expression
            guarded = exp.Case(ifs=[exp.If(this=exp.EQ(this=divisor.copy(), expression=exp.Literal.number(0)),
                                           true=exp.func("error", exp.Literal.string(DIVISION_BY_ZERO)))],
                               default=divisor.copy())
            node.replace(exp.Div(this=node.this, expression=guarded))
    return tree


def _nodes(tree: exp.Expr) -> list[exp.Expr]:
    """The divisions the client wrote in Trino SQL (typed: policy SQL is the backend's dialect, as written) and
    the casts to an integer type, in depth-first order."""
    return [node for node in tree.find_all(exp.Div, exp.Cast, bfs=False)
            if (isinstance(node, exp.Div) and node.args.get("typed"))
            or (type(node) is exp.Cast and node.to.this in exp.DataType.INTEGER_TYPES)]


Types = tuple[exp.DType | None, exp.DType | None]


def _operand_types(tree: exp.Expr, nodes: list[exp.Expr], schema: Mapping[str, Any] | None) -> list[Types]:
    """(left, right) operand types of each node (a cast's: (None, its argument's)). Typed on a copy whose
    columns are qualified against the catalog, so the tree itself keeps its shape and output names; the copy's
    nodes pair with the originals by depth-first order, which qualification does not change."""
    typed = tree.copy()
    try:
        qualify_columns(typed, schema=ensure_schema(dict(schema or {}), dialect="trino"), expand_stars=False,
                        allow_partial_qualification=True, dialect="trino")
    except SqlglotError:  # an unresolvable name: the engine reports it; typing just knows less
        typed = tree.copy()
    annotate_types(typed, schema=dict(schema) if schema else None, dialect="trino")
    copies = _nodes(typed)
    if len(copies) != len(nodes):
        return [(None, None)] * len(nodes)
    return [(None, _kind(c.this)) if isinstance(c, exp.Cast) else (_kind(c.this), _kind(c.expression))
            for c in copies]


def _check_integer_text(cast: exp.Cast) -> None:
    """CAST(text AS integer type) that fails, as in Trino, for text that is not an integer literal."""
    value = cast.this
    integer_text = exp.func("regexp_full_match", value.copy(), exp.Literal.string(INTEGER_TEXT))
    message = f"Cannot cast '…' to {cast.to.sql(dialect='trino').lower()}"
    checked = exp.Case(ifs=[exp.If(this=exp.or_(value.copy().is_(exp.Null()), integer_text), true=value.copy())],
                       default=exp.func("error", exp.Literal.string(message)))
    cast.set("this", checked)


def _kind(node: exp.Expr) -> exp.DType | None:
    kind = node.type
    return kind.this if isinstance(kind, exp.DataType) else None


def _is_floating(node: exp.Expr, kind: exp.DType | None) -> bool:
    while isinstance(node, exp.Neg | exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        return "e" in node.name.lower()  # 1.5 is a decimal in Trino, 1.5e0 a double
    return kind in _FLOATING
