"""Trino's declared type of each output column, derived from the client's (Trino-dialect) tree where Trino's
rules determine it for certain — a pure step of planning. The engines type results by their own rules
(`'abc'` is varchar, `TIME '01:02:03.456'` time(6), `d + INTERVAL '1' MONTH` a timestamp, tinyint on
PostgreSQL smallint); Trino clients decode by Trino's. The plan carries these types; the frontend reports them
and coerces each value to its type (rounds a fraction to the precision, pads char(n), cuts varchar(n), scales
a decimal), see `gateway/frontends/trino_values.py`.

Derived, by Trino's rules:

    literals           'abc' varchar(3), 1 integer, 2147483648 bigint, 1.50 decimal(3,2), 1e0 double,
                       TIMESTAMP '… .321' timestamp(3), TIME, DATE, X'…', JSON '…', true
    CAST(x AS T)       T, with Trino's defaults: timestamp and time (3), char (1), decimal (38,0)
    columns            their catalog type
    arithmetic         + - * / % on integers (the wider), decimals (Trino's precision and scale), real, double;
                       date ± whole-day or month interval: date; timestamp/time ± interval: the same type
    ARRAY[…], MAP(…),  when every element has one derived type (varchar(n) widened to the longest)
    ROW(…)
    AT TIME ZONE 'z',  timestamp(p) with time zone, shown in zone z; a literal with a zone name or offset is
    with_timezone      shown in that zone
    from_unixtime(x)   timestamp(3) with time zone, in the session zone

Anything else (functions, CASE, subqueries, `*`, set operations) is None: the engine's type stays.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlglot import exp

from gateway import types as t
from gateway.relations import Column
from gateway.sql.trino_semantics import MAX_DECIMAL_PRECISION, division_shape, literal_decimal_shape

_INTEGERS = ("tinyint", "smallint", "integer", "bigint")
_INTEGER_SHAPES = {"tinyint": (3, 0), "smallint": (5, 0), "integer": (10, 0), "bigint": (19, 0)}
_SIMPLE: dict[exp.DType, t.SqlType] = {
    exp.DType.BOOLEAN: t.BOOLEAN, exp.DType.TINYINT: t.TINYINT, exp.DType.SMALLINT: t.SMALLINT,
    exp.DType.INT: t.INTEGER, exp.DType.BIGINT: t.BIGINT, exp.DType.FLOAT: t.REAL, exp.DType.DOUBLE: t.DOUBLE,
    exp.DType.DATE: t.DATE, exp.DType.VARBINARY: t.VARBINARY, exp.DType.UUID: t.UUID, exp.DType.JSON: t.JSON,
}
_TEMPORAL = {exp.DType.TIMESTAMP: ("timestamp", False), exp.DType.TIMESTAMPTZ: ("timestamp", True),
             exp.DType.TIME: ("time", False), exp.DType.TIMETZ: ("time", True)}
_DEFAULT_FRACTION = 3  # Trino's timestamp and time without a precision
_ZONED_LITERAL = re.compile(r"^\s*[+-]?\d{1,6}-\d{1,2}-\d{1,2}[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
                            r"\s*(?P<zone>\S.*?)\s*$")
_OFFSET = re.compile(r"^(?P<sign>[+-])(?P<hours>\d{1,2})(?::?(?P<minutes>\d{2}))?$")
_DAY_OR_MONTH_UNITS = frozenset({"DAY", "WEEK", "MONTH", "YEAR", "QUARTER"})


@dataclass(frozen=True, slots=True)
class OutputType:
    """Trino's declared type of one output column; for timestamp with time zone, the zone its values are shown
    in when the plan knows it (a literal's zone, AT TIME ZONE), else None (the session's)."""

    type: t.SqlType
    zone: str | None = None


Lookup = Callable[[exp.Column], t.SqlType | None]


def output_types(tree: exp.Expr, *, schema: Mapping[str, Any] | None = None) -> tuple[OutputType | None, ...]:
    """One entry per output column of `tree` (None where Trino's type is not derived); () when the columns
    themselves are not known here (`*`, set operations, not a query)."""
    if not isinstance(tree, exp.Select):
        return ()
    selects = tree.selects
    if any(isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star))
           for s in selects):
        return ()
    lookup = _column_lookup(tree, schema or {})
    return tuple(derive(s.this if isinstance(s, exp.Alias) else s, lookup) for s in selects)


def _column_lookup(select: exp.Select, schema: Mapping[str, Any]) -> Lookup:
    """Column types from the catalog for the tables this select reads directly (not subqueries or CTEs): a
    qualified column by its table's alias, an unqualified one when a single table is read."""
    tables: dict[str, Mapping[str, str]] = {}
    sources = [select.args.get("from_") or select.args.get("from")]
    sources += list(select.args.get("joins") or [])
    for source in sources:
        table = source.this if isinstance(source, exp.From | exp.Join) else None
        if not isinstance(table, exp.Table) or not table.name:
            return lambda _: None  # a subquery or function as a source: its columns' types are not known here
        columns = schema.get(table.catalog, {}).get(table.db, {}).get(table.name)
        if not isinstance(columns, Mapping):
            return lambda _: None
        tables[(table.alias_or_name).lower()] = columns
    with_ = select.args.get("with_") or select.args.get("with") or exp.With()
    ctes = {c.alias_or_name.lower() for c in with_.expressions}
    if ctes & set(tables):
        return lambda _: None

    def lookup(column: exp.Column) -> t.SqlType | None:
        owners = [tables[column.table.lower()]] if column.table else list(tables.values())
        if len(owners) != 1 or (column.table and column.table.lower() not in tables):
            return None
        text = {k.lower(): v for k, v in owners[0].items()}.get(column.name.lower())
        if text is None:
            return None
        try:
            return sql_type(exp.DataType.build(text, dialect="trino"))
        except Exception:  # a catalog type sqlglot cannot parse: not derived
            return None

    return lookup


def derive(node: exp.Expr, lookup: Lookup | None = None) -> OutputType | None:
    """Trino's type of expression `node`, or None where its rules are not applied here."""
    look: Lookup = lookup or (lambda _: None)
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal):
        return _literal(node)
    if isinstance(node, exp.Boolean):
        return OutputType(t.BOOLEAN)
    if isinstance(node, exp.HexString):
        return OutputType(t.VARBINARY)
    if isinstance(node, exp.ParseJSON) and node.args.get("is_literal"):
        return OutputType(t.JSON)
    if type(node) is exp.Cast:
        return _cast(node, look)
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        kind = look(node)
        return OutputType(kind) if kind is not None else None
    if isinstance(node, exp.Neg):
        inner = derive(node.this, look)
        return inner if inner is not None and _is_numeric(inner.type) else None
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Mod):
        return _arithmetic(node, look)
    if isinstance(node, exp.Array):
        element = _common([derive(e, look) for e in node.expressions])
        return OutputType(t.array(element)) if element is not None else None
    if isinstance(node, exp.Map) and isinstance(node.args.get("keys"), exp.Array) \
            and isinstance(node.args.get("values"), exp.Array):
        keys, values = (derive(node.args[k], look) for k in ("keys", "values"))
        if keys is None or values is None:
            return None
        return OutputType(t.map_of(keys.type.children[0], values.type.children[0]))
    if isinstance(node, exp.Struct) and not any(isinstance(e, exp.PropertyEQ | exp.Alias) for e in node.expressions):
        fields = [derive(e, look) for e in node.expressions]
        if any(f is None for f in fields) or not fields:
            return None
        return OutputType(t.row([("", f.type) for f in fields if f is not None]))
    if isinstance(node, exp.UnixToTime) and len([v for v in node.args.values() if v is not None]) == 1:
        return OutputType(t.timestamp(3, with_time_zone=True))  # from_unixtime(x): in the session zone
    if isinstance(node, exp.AtTimeZone):
        return _in_zone(derive(node.this, look), node.args.get("zone"), requires_zone=True)
    if isinstance(node, exp.Anonymous) and node.name.lower() == "with_timezone" and len(node.expressions) == 2:
        return _in_zone(derive(node.expressions[0], look), node.expressions[1], requires_zone=False)
    return None


def _literal(node: exp.Literal) -> OutputType | None:
    if node.is_string:
        return OutputType(t.varchar(len(node.name)))
    text = node.name
    if "e" in text.lower():
        return OutputType(t.DOUBLE)
    if "." in text:
        shape = literal_decimal_shape(text)
        return OutputType(t.decimal(*shape)) if shape is not None and shape[0] <= MAX_DECIMAL_PRECISION else None
    if not text.isdigit():
        return None
    value = int(text)
    return OutputType(t.INTEGER if value < 2**31 else t.BIGINT) if value < 2**63 else None


def _cast(node: exp.Cast, look: Lookup) -> OutputType | None:
    kind = node.to
    value = node.this
    literal = value.name if isinstance(value, exp.Literal) and value.is_string else None
    if kind.this == exp.DType.DECIMAL and not kind.expressions and literal is not None:
        shape = literal_decimal_shape(literal)  # DECIMAL '1.50' (translated to decimal(3,2), trino_types.py)
        return OutputType(t.decimal(*shape)) if shape is not None and shape[0] <= MAX_DECIMAL_PRECISION else None
    declared = sql_type(kind)
    if declared is None:
        return None
    if declared.name == "timestamp with time zone" and literal is not None:
        return OutputType(declared, literal_zone(literal))
    if declared.name == "timestamp with time zone":
        source = derive(value, look)
        if source is not None and source.type.name == declared.name:
            return OutputType(declared, source.zone)  # a cast keeps the zone
    return OutputType(declared)


def sql_type(kind: exp.DataType) -> t.SqlType | None:
    """A Trino type from sqlglot's (Trino-dialect) DataType, with Trino's defaults; None for what is not
    mapped here."""
    simple = _SIMPLE.get(kind.this)
    if simple is not None:
        return simple
    params = [_number(p) for p in kind.expressions] if kind.this not in (exp.DType.ARRAY, exp.DType.MAP,
                                                                        exp.DType.STRUCT) else []
    if any(p is None for p in params):
        return None
    numbers = [p for p in params if p is not None]
    if kind.this in (exp.DType.VARCHAR, exp.DType.NVARCHAR, exp.DType.TEXT):
        return t.varchar(numbers[0]) if numbers else t.VARCHAR
    if kind.this in (exp.DType.CHAR, exp.DType.NCHAR):
        return t.SqlType("char", (numbers[0] if numbers else 1,))
    if kind.this == exp.DType.DECIMAL:
        precision, scale = (numbers[0], numbers[1] if len(numbers) > 1 else 0) if numbers \
            else (MAX_DECIMAL_PRECISION, 0)
        return t.decimal(precision, scale) if 0 <= scale <= precision <= MAX_DECIMAL_PRECISION else None
    if kind.this in _TEMPORAL:
        base, zoned = _TEMPORAL[kind.this]
        precision = numbers[0] if numbers else _DEFAULT_FRACTION
        make = t.timestamp if base == "timestamp" else t.time
        return make(precision, with_time_zone=zoned)
    children = [sql_type(c.args["kind"]) if isinstance(c, exp.ColumnDef) else
                sql_type(c) if isinstance(c, exp.DataType) else None for c in kind.expressions]
    if not children or any(c is None for c in children):
        return None
    known = [c for c in children if c is not None]
    if kind.this == exp.DType.ARRAY and len(known) == 1:
        return t.array(known[0])
    if kind.this == exp.DType.MAP and len(known) == 2:
        return t.map_of(known[0], known[1])
    if kind.this == exp.DType.STRUCT:
        names = [c.name if isinstance(c, exp.ColumnDef) else "" for c in kind.expressions]
        return t.row(list(zip(names, known, strict=True)))
    return None


def _number(param: exp.Expr) -> int | None:
    value = param.this if isinstance(param, exp.DataTypeParam) else param
    return int(value.name) if isinstance(value, exp.Literal) and value.name.isdigit() else None


def _is_numeric(kind: t.SqlType) -> bool:
    return kind.name in (*_INTEGERS, "decimal", "real", "double")


def _arithmetic(node: exp.Expr, look: Lookup) -> OutputType | None:
    first, second = node.this, node.expression
    if _is_interval(first) or _is_interval(second):
        return _moved(node, look)
    left, right = derive(first, look), derive(second, look)
    if left is None or right is None or not (_is_numeric(left.type) and _is_numeric(right.type)):
        return None
    numeric = _numeric(node, left.type, right.type)
    return OutputType(numeric) if numeric is not None else None


def _moved(node: exp.Expr, look: Lookup) -> OutputType | None:
    """A date, timestamp or time plus or minus an interval: x + i, i + x, x - i."""
    first, second = node.this, node.expression
    if not isinstance(node, exp.Add | exp.Sub) or (_is_interval(first) and _is_interval(second)):
        return None
    if isinstance(node, exp.Sub) and _is_interval(first):
        return None  # INTERVAL - x
    interval, operand = (first, second) if _is_interval(first) else (second, first)
    moment = derive(operand, look)
    if moment is None:
        return None
    if moment.type == t.DATE:
        return moment if _interval_unit(interval) in _DAY_OR_MONTH_UNITS else None  # Trino refuses hours on dates
    if moment.type.name in ("timestamp", "timestamp with time zone", "time", "time with time zone"):
        return moment
    return None


def _is_interval(node: exp.Expr) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    return isinstance(node, exp.Interval)


def _interval_unit(node: exp.Expr) -> str | None:
    while isinstance(node, exp.Paren):
        node = node.this
    unit = node.args.get("unit")
    if isinstance(unit, exp.IntervalSpan):
        first, last = unit.this.name.upper(), unit.expression.name.upper()
        return first if (first, last) == ("YEAR", "MONTH") else None
    return unit.name.upper() if isinstance(unit, exp.Var) else None


def _numeric(node: exp.Expr, a: t.SqlType, b: t.SqlType) -> t.SqlType | None:
    if "double" in (a.name, b.name):
        return t.DOUBLE
    if "real" in (a.name, b.name):
        return t.REAL
    if a.name in _INTEGERS and b.name in _INTEGERS:
        return a if _INTEGERS.index(a.name) >= _INTEGERS.index(b.name) else b
    (p1, s1), (p2, s2) = (_INTEGER_SHAPES.get(k.name) or (k.arguments[0], k.arguments[1]) for k in (a, b))
    if isinstance(node, exp.Mul):
        precision, scale = min(MAX_DECIMAL_PRECISION, p1 + p2), s1 + s2
    elif isinstance(node, exp.Div):
        precision, scale = division_shape((p1, s1), (p2, s2))
    elif isinstance(node, exp.Mod):
        scale = max(s1, s2)
        precision = min(MAX_DECIMAL_PRECISION, min(p1 - s1, p2 - s2) + scale)
    else:
        scale = max(s1, s2)
        precision = min(MAX_DECIMAL_PRECISION, 1 + scale + max(p1 - s1, p2 - s2))
    return t.decimal(precision, scale) if scale <= precision else None


def _common(elements: list[OutputType | None]) -> t.SqlType | None:
    """The one type of all `elements` (NULLs aside; varchar(n) widened to the longest), or None."""
    kinds = [e.type for e in elements if e is not None]
    if not kinds or len(kinds) != len(elements):
        return None
    if all(k.name == "varchar" for k in kinds):
        return t.varchar(max(k.arguments[0] for k in kinds))
    return kinds[0] if all(k == kinds[0] for k in kinds) else None


def _in_zone(source: OutputType | None, zone: exp.Expr | None, *, requires_zone: bool) -> OutputType | None:
    """`x AT TIME ZONE 'z'` (x a timestamp with time zone) and with_timezone(x, 'z') (x a timestamp)."""
    if source is None or not isinstance(zone, exp.Literal) or not zone.is_string:
        return None
    name = zone_name(zone.name)
    if name is None:
        return None
    expected = "timestamp with time zone" if requires_zone else "timestamp"
    if source.type.name != expected:
        return None
    return OutputType(t.timestamp(source.type.arguments[0], with_time_zone=True), name)


def literal_zone(literal: str) -> str | None:
    """The zone a `TIMESTAMP '… zone'` literal names, as Trino shows it (a zone id or ±hh:mm); None without."""
    match = _ZONED_LITERAL.match(literal)
    return zone_name(match["zone"]) if match else None


def zone_name(text: str) -> str | None:
    """A zone id (`America/Los_Angeles`, `UTC`) or an offset written `±h`, `±hh:mm`, `±hhmm`, as Trino shows it
    (`+05:30`); None for anything else."""
    text = text.strip()
    offset = _OFFSET.match(text)
    if offset is not None:
        hours, minutes = int(offset["hours"]), int(offset["minutes"] or 0)
        if hours > 14 or minutes > 59:
            return None
        if hours == minutes == 0:
            return "UTC"
        return f"{offset['sign']}{hours:02d}:{minutes:02d}"
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-/]*", text):
        return None
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return text


# Engine types whose values a declared type's encoder takes (the same Python values): a declared type outside
# its engine type's family is not applied (the engine's stays), so a wrong derivation can never mis-encode.
_FAMILIES: dict[str, frozenset[str]] = {
    **{name: frozenset(_INTEGERS) for name in _INTEGERS},
    "real": frozenset({"real", "double"}), "double": frozenset({"double", "real"}),
    "varchar": frozenset({"varchar", "char"}), "char": frozenset({"varchar", "char"}),
    "date": frozenset({"date", "timestamp"}),
}


def declared(engine: t.SqlType, output: OutputType | None) -> t.SqlType:
    """The type to report for a column the engine typed `engine`: Trino's derived type where it is of the
    engine type's family (arrays, maps and rows: field by field), else the engine's."""
    if output is None:
        return engine
    return engine if (kind := _applicable(engine, output.type)) is None else kind


def _applicable(engine: t.SqlType, kind: t.SqlType) -> t.SqlType | None:
    if kind.name in ("array", "map", "row"):
        if engine.name != kind.name or len(engine.children) != len(kind.children):
            return None
        children = [_applicable(e, k) for e, k in zip(engine.children, kind.children, strict=True)]
        if any(c is None for c in children):
            return None
        return t.SqlType(kind.name, children=tuple(c for c in children if c is not None),
                         field_names=kind.field_names if kind.name == "row" else ())
    if kind.name in _INTEGERS and engine.name == "decimal" and engine.arguments[1:] == (0,):
        return kind  # Snowflake's NUMBER(38,0): its values are Python ints
    return kind if engine.name in _FAMILIES.get(kind.name, frozenset({kind.name})) else None


def declared_columns(columns: tuple[Column, ...], outputs: tuple[OutputType | None, ...]) -> tuple[Column, ...]:
    """`columns` as the engine typed them, each with its `declared` type (unchanged when the counts differ)."""
    if len(outputs) != len(columns):
        return columns
    return tuple(replace(c, type=declared(c.type, o)) for c, o in zip(columns, outputs, strict=True))
