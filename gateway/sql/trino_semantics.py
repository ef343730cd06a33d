"""Trino's arithmetic where DuckDB's differs and users would notice, as a pure tree -> tree step of generation.

    integer / integer    Trino: integer division, truncated (5 / 2 = 2)      -> DuckDB `//` (also truncates)
    x / 0, x % 0         Trino: DIVISION_BY_ZERO for exact types               -> `//`, `%` raise natively; `/`
                         (DuckDB `/` answers inf, or NULL)                        gets a divisor that raises
                                                                                  "Division by zero" when 0
    double / 0           Trino: Infinity (IEEE)                                -> left alone when the divisor
                                                                                  is known to be double/real
    decimal / decimal    Trino: decimal(min(38, p1 + s2 + max(0, s2 - s1)),   -> exact on the unscaled
    (or integer)         max(s1, s2)), rounded half up (DuckDB: a double)       integers (hugeint), then
                                                                                  scaled back to that type
    smallint + 32767     Trino: an integer literal is an integer, so the sum  -> the literal is cast to integer
    (tinyint, smallint)  is an integer (DuckDB: a literal takes the other        when the other operand is a
                         operand's narrow type and overflows)                    tinyint or smallint
    decimal * decimal    Trino: decimal(p1 + p2, s1 + s2), exact up to 38     -> the left operand is cast to
    (or integer)         digits (DuckDB overflows past 18 digits when both       decimal(p1 + p2, s1) when
                         operands have at most 18)                               p1 + p2 > 18
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

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify_columns import qualify_columns
from sqlglot.schema import ensure_schema

DIVISION_BY_ZERO = "Division by zero"
INTEGER_TEXT = r"\s*[+-]?[0-9]+\s*"  # what Trino casts to an integer type
_FLOATING = {exp.DType.DOUBLE, exp.DType.FLOAT}


def trino_arithmetic(tree: exp.Expr, *, schema: Mapping[str, Any] | None = None,
                     dialect: str = "duckdb") -> exp.Expr:
    """Rewrite `/` and text-to-integer casts in place for DuckDB (see the module docstring); for PostgreSQL,
    whose other arithmetic is Trino's already, only decimal division. Returns the tree."""
    if dialect == "duckdb" and _mentions_narrow_integers(tree, schema):
        _widen_integer_literals(tree, schema)
    select = _nodes if dialect == "duckdb" else _divisions_and_casts  # PostgreSQL's numeric does not overflow
    nodes = select(tree)
    if not nodes:
        return tree
    typed: list[exp.Expr | None] = [*(_typed_nodes(tree, nodes, schema, select) or [])] or [None] * len(nodes)
    for node, copy in zip(nodes, typed, strict=True):
        left, right = _operand_kinds(copy)
        if dialect == "postgres":
            if isinstance(node, exp.Div) and (shapes := _decimal_operands(copy)) is not None:
                node.replace(_numeric_division(node.this, node.expression, *shapes))
        elif isinstance(node, exp.Mul):
            if (shapes := _decimal_operands(copy)) is not None and shapes[0][0] + shapes[1][0] > _NARROW_DECIMAL:
                (p1, s1), (p2, _) = shapes
                wide = exp.DataType.build(f"DECIMAL({min(MAX_DECIMAL_PRECISION, p1 + p2)}, {s1})")
                # exp.cast would keep an operand that is a decimal of any precision already
                node.set("this", exp.Cast(this=node.this, to=wide))
        elif isinstance(node, exp.Cast):
            if right in exp.DataType.TEXT_TYPES:
                _check_integer_text(node)
        elif left in exp.DataType.INTEGER_TYPES and right in exp.DataType.INTEGER_TYPES:
            node.replace(exp.IntDiv(this=node.this, expression=node.expression))
        elif (shapes := _decimal_operands(copy)) is not None:
            node.replace(_decimal_division(node.this, node.expression, *shapes))
        elif not _is_floating(node.expression, right) and not _is_floating(node.this, left):
            divisor = node.expression
            guarded = exp.Case(ifs=[exp.If(this=exp.EQ(this=divisor.copy(), expression=exp.Literal.number(0)),
                                           true=exp.func("error", exp.Literal.string(DIVISION_BY_ZERO)))],
                               default=divisor.copy())
            node.replace(exp.Div(this=node.this, expression=guarded))
    return tree


def _nodes(tree: exp.Expr) -> list[exp.Expr]:
    """The divisions the client wrote in Trino SQL (typed: policy SQL is the backend's dialect, as written),
    the multiplications and the casts to an integer type, in depth-first order."""
    return _divisions_and_casts(tree, multiplications=True)


def _divisions_and_casts(tree: exp.Expr, *, multiplications: bool = False) -> list[exp.Expr]:
    return [node for node in tree.find_all(exp.Div, exp.Cast, exp.Mul, bfs=False)
            if (isinstance(node, exp.Div) and node.args.get("typed")) or (multiplications and type(node) is exp.Mul)
            or (type(node) is exp.Cast and node.to.this in exp.DataType.INTEGER_TYPES)]


Types = tuple[exp.DType | None, exp.DType | None]


def _operand_kinds(copy: exp.Expr | None) -> Types:
    """(left, right) operand types of a typed node (a cast's: (None, its argument's))."""
    if copy is None:
        return None, None
    if isinstance(copy, exp.Cast):
        return None, _kind(copy.this)
    return _kind(copy.this), _kind(copy.expression)


_NARROW_INTEGERS = {exp.DType.TINYINT, exp.DType.SMALLINT}
_NARROW_NAMES = ("tinyint", "smallint", "int1", "int2")


def _mentions_narrow_integers(tree: exp.Expr, schema: Mapping[str, Any] | None) -> bool:
    """Whether a tinyint or smallint can be an operand at all (a cheap test before typing the tree)."""
    def in_schema(value: object) -> bool:
        if isinstance(value, Mapping):
            return any(in_schema(inner) for inner in value.values())
        return isinstance(value, str | exp.DataType) and str(value).lower().startswith(_NARROW_NAMES)

    casts = any(cast.to.this in _NARROW_INTEGERS for cast in tree.find_all(exp.Cast))
    return casts or in_schema(schema or {})


def _integer_literal(node: exp.Expr) -> bool:
    return _literal_digits(node) is not None


def _literal_digits(node: exp.Expr) -> str | None:
    """The digits of an integer literal (under any signs and parentheses), else None."""
    while isinstance(node, exp.Neg | exp.Paren):
        node = node.this
    return node.name if isinstance(node, exp.Literal) and not node.is_string and node.name.isdigit() else None


def _arithmetic_with_literals(tree: exp.Expr) -> list[exp.Expr]:
    return [node for node in tree.find_all(exp.Add, exp.Sub, exp.Mul, exp.Mod, bfs=False)
            if _integer_literal(node.this) or _integer_literal(node.expression)]


def _widen_integer_literals(tree: exp.Expr, schema: Mapping[str, Any] | None) -> None:
    """Cast each integer literal whose other operand is a tinyint or smallint to integer, Trino's type of it."""
    nodes = _arithmetic_with_literals(tree)
    typed = _typed_nodes(tree, nodes, schema, select=_arithmetic_with_literals) if nodes else None
    for node, copy in zip(nodes, typed or [], strict=True):
        for side, other in (("this", copy.expression), ("expression", copy.this)):
            literal = node.args[side]
            digits = _literal_digits(literal)
            if digits is not None and _kind(other) in _NARROW_INTEGERS:
                node.set(side, exp.cast(literal, exp.DType.BIGINT if int(digits) >= 2**31 else exp.DType.INT))


def _typed_nodes(tree: exp.Expr, nodes: list[exp.Expr], schema: Mapping[str, Any] | None,
                 select: Callable[[exp.Expr], list[exp.Expr]] | None = None) -> list[exp.Expr] | None:
    """Typed copies of `nodes` (None if they cannot be paired). Typed on a copy whose
    columns are qualified against the catalog, so the tree itself keeps its shape and output names; the copy's
    nodes pair with the originals by depth-first order, which qualification does not change."""
    typed = tree.copy()
    try:
        qualify_columns(typed, schema=ensure_schema(dict(schema or {}), dialect="trino"), expand_stars=False,
                        allow_partial_qualification=True, dialect="trino")
    except (SqlglotError, AssertionError):  # an unresolvable name, or `SELECT * ... ORDER BY 1`, which sqlglot
        typed = tree.copy()                   # asserts on without expanding the star: typing just knows less
    annotate_types(typed, schema=dict(schema) if schema else None, dialect="trino")
    copies = (select or _nodes)(typed)
    return copies if len(copies) == len(nodes) else None


Shape = tuple[int, int]  # a decimal's (precision, scale)
_INTEGER_SHAPES: dict[exp.DType, Shape] = {exp.DType.TINYINT: (3, 0), exp.DType.SMALLINT: (5, 0),
                                           exp.DType.INT: (10, 0), exp.DType.BIGINT: (19, 0)}
MAX_DECIMAL_PRECISION = 38
_NARROW_DECIMAL = 18  # DuckDB's widest decimal held in 64 bits


def literal_decimal_shape(text: str) -> Shape | None:
    """The decimal type Trino gives a literal (1.50 is decimal(3,2), DECIMAL '0.5' decimal(1,1))."""
    digits = text.strip().lstrip("+-")
    whole, _, fraction = digits.partition(".")
    if not (whole + fraction).isdigit():
        return None
    return max(len(whole.lstrip("0")) + len(fraction), 1), len(fraction)


def _shape(node: exp.Expr) -> tuple[Shape, bool] | None:
    """A division operand's decimal shape by Trino's rules, and whether it is a decimal (not an integer); None
    where it is not known for sure (the division then stays the engine's). Only what Trino's rules derive
    exactly: literals, typed casts and columns, integers, and +, -, *, sum() of those — never sqlglot's guess for
    an expression, whose scale would silently change the quotient's rounding."""
    while isinstance(node, exp.Neg | exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        if "e" in node.name.lower():
            return None
        if "." in node.name:
            shape = literal_decimal_shape(node.name)
            return (shape, True) if shape else None
        return ((10, 0) if abs(int(node.name)) < 2**31 else (19, 0)), False
    if isinstance(node, exp.Add | exp.Sub | exp.Mul):
        left, right = _shape(node.this), _shape(node.expression)
        if left is None or right is None:
            return None
        (p1, s1), (p2, s2) = left[0], right[0]
        if isinstance(node, exp.Mul):
            shape = (min(MAX_DECIMAL_PRECISION, p1 + p2), s1 + s2)
        else:
            scale = max(s1, s2)
            shape = (min(MAX_DECIMAL_PRECISION, 1 + scale + max(p1 - s1, p2 - s2)), scale)
        return (shape, left[1] or right[1]) if shape[1] <= MAX_DECIMAL_PRECISION else None
    if isinstance(node, exp.Sum):
        inner = _shape(node.this)
        return None if inner is None or not inner[1] else ((MAX_DECIMAL_PRECISION, inner[0][1]), True)
    kind = node.type
    if not isinstance(kind, exp.DataType):
        return None
    if kind.this in _INTEGER_SHAPES:
        return _INTEGER_SHAPES[kind.this], False
    if kind.this != exp.DType.DECIMAL or not isinstance(node, exp.Column | exp.Cast):
        return None
    params = [p.this if isinstance(p, exp.DataTypeParam) else p for p in kind.expressions]
    if len(params) == 2 and all(isinstance(p, exp.Literal) and p.name.isdigit() for p in params):
        return (int(params[0].name), int(params[1].name)), True
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
        shape = literal_decimal_shape(node.this.name)  # DECIMAL '1.5'
        return (shape, True) if shape else None
    return None


def _decimal_operands(copy: exp.Expr | None) -> tuple[Shape, Shape] | None:
    if not isinstance(copy, exp.Div | exp.Mul):
        return None
    left, right = _shape(copy.this), _shape(copy.expression)
    if left is None or right is None or not (left[1] or right[1]):
        return None
    return left[0], right[0]


def division_shape(left: Shape, right: Shape) -> Shape:
    (p1, s1), (_, s2) = left, right
    return min(MAX_DECIMAL_PRECISION, p1 + s2 + max(0, s2 - s1)), max(s1, s2)


def _numeric_division(dividend: exp.Expr, divisor: exp.Expr, left: Shape, right: Shape) -> exp.Expr:
    """PostgreSQL: numeric division (exact to at least 16 digits past the point) rounded half away from zero, as
    Trino's half up, to Trino's result type."""
    precision, scale = division_shape(left, right)
    quotient = exp.Div(this=exp.cast(dividend, exp.DType.DECIMAL), expression=divisor)
    rounded = exp.func("round", quotient, exp.Literal.number(scale))
    return exp.cast(rounded, exp.DataType.build(f"DECIMAL({precision}, {scale})"))


def _decimal_division(dividend: exp.Expr, divisor: exp.Expr, left: Shape, right: Shape) -> exp.Expr:
    """dividend / divisor in Trino's decimal arithmetic: on the unscaled integers A and B, the quotient
    A * 10^(s - s1 + s2) / B rounded half up, then given scale s. A quotient beyond hugeint overflows (an
    error, never a rounded value)."""
    (_, s1), (_, s2) = left, right
    precision, scale = division_shape(left, right)

    def unscaled(value: exp.Expr, digits: int) -> exp.Expr:
        if not digits:
            return exp.cast(value, exp.DType.INT128)
        # Through its text: DuckDB multiplies a decimal in its own width (decimal(13,6) * 10^6 overflows int64).
        text = exp.cast(exp.cast(value, exp.DataType.build(f"DECIMAL({MAX_DECIMAL_PRECISION}, {digits})")),
                        exp.DType.VARCHAR)
        return exp.cast(exp.func("replace", text, exp.Literal.string("."), exp.Literal.string("")),
                        exp.DType.INT128)

    numerator = exp.Mul(this=unscaled(dividend, s1), expression=exp.Literal.number(10 ** (scale - s1 + s2)))
    denominator = unscaled(divisor, s2)

    def absolute(value: exp.Expr) -> exp.Expr:
        return exp.func("abs", value.copy())

    two = exp.Literal.number(2)
    magnitude = exp.IntDiv(this=exp.paren(exp.Add(this=exp.Mul(this=two, expression=absolute(numerator)),
                                                  expression=absolute(denominator))),
                           expression=exp.paren(exp.Mul(this=two.copy(), expression=absolute(denominator))))
    sign = exp.Mul(this=exp.func("sign", numerator.copy()), expression=exp.func("sign", denominator.copy()))
    quotient: exp.Expr = exp.cast(exp.Mul(this=sign, expression=exp.paren(magnitude)),
                        exp.DataType.build(f"DECIMAL({MAX_DECIMAL_PRECISION}, 0)"))
    if scale:
        unit = exp.cast(exp.Literal.string(f"{Decimal(1).scaleb(-scale):f}"),
                        exp.DataType.build(f"DECIMAL({scale + 1}, {scale})"))
        quotient = exp.Mul(this=quotient, expression=unit)
    return exp.cast(exp.paren(quotient), exp.DataType.build(f"DECIMAL({precision}, {scale})"))


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
