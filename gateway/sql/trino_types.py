"""Trino's types and literals in client SQL, translated for the backend's dialect (a pure tree -> tree step of
generation), or refused with NOT_SUPPORTED naming the type where the backend cannot keep the value.

    timestamp(p), time(p)      The backends keep microseconds. A literal with non-zero digits past the sixth is
    (… with time zone)         refused (its value would be rounded), so is a precision the backend has no type
                               for (DuckDB: timestamp up to 9, the rest up to 6; PostgreSQL: 6).
    '… +05:30' zone offsets    DuckDB reads an offset only when it follows the time without a space.
    INTERVAL '1-2' YEAR TO     Trino's field syntax becomes the engines' text ('1 years 2 months',
    MONTH, '1 2:03:04' DAY     '1 days 02:03:04'). Month intervals are exact added to a date or timestamp;
    TO SECOND                  anywhere else they are refused (both engines hand them out as days).
    DECIMAL '1.50'             decimal(3,2) as in Trino (the engines' default is decimal(18,3) or numeric).
    CAST(x AS char(n))         DuckDB has no char: the value is padded (and cut) to n, as Trino's char is.
    ipaddress, ipprefix, …     Types no backend has: refused.
    X'65683F' on PostgreSQL    a bytea literal (PostgreSQL reads X'…' as a bit string).
    row, map, array(array)     refused on PostgreSQL (no anonymous rows, no maps, arrays of arrays are one array).
    nan(), infinity()          The double values themselves (neither engine has the functions).
    x AT TIME ZONE 'z',        x itself (the same instant; shown in z by the frontend), and ts AT TIME ZONE 'z',
    with_timezone(ts, 'z')     where x, ts are typed by Trino's rules (sql/trino_output_types.py)
"""

from __future__ import annotations

import re

from sqlglot import exp

from gateway.errors import NotSupported
from gateway.sql.trino_output_types import derive
from gateway.sql.trino_semantics import literal_decimal_shape

# Digits of a second's fraction each backend keeps in a value, and the largest precision it has a type for.
KEPT_DIGITS = 6
_MAX_PRECISION: dict[str, dict[exp.DType, int]] = {
    "duckdb": {exp.DType.TIMESTAMP: 9, exp.DType.TIMESTAMPTZ: 6, exp.DType.TIME: 6, exp.DType.TIMETZ: 6},
    "postgres": {exp.DType.TIMESTAMP: 6, exp.DType.TIMESTAMPTZ: 6, exp.DType.TIME: 6, exp.DType.TIMETZ: 6},
}
NANOSECOND_RANGE = ("1677-09-22", "2262-04-11")  # the days DuckDB's timestamp_ns holds whole
_TRINO_NAMES = {exp.DType.TIMESTAMP: "timestamp({})", exp.DType.TIMESTAMPTZ: "timestamp({}) with time zone",
                exp.DType.TIME: "time({})", exp.DType.TIMETZ: "time({}) with time zone"}
_NO_BACKEND_HAS = {exp.DType.IPADDRESS: "ipaddress", exp.DType.IPPREFIX: "ipprefix",
                   exp.DType.HLLSKETCH: "HyperLogLog"}
_FRACTION = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?\.(\d+)")
_SPACED_OFFSET = re.compile(r"^(.*\d)\s+([+-]\d{1,2}(?::?\d{2})?)$")
_YEAR_TO_MONTH = re.compile(r"^\s*([+-]?)(\d+)-(\d+)\s*$")
_DAY_TO_SECOND = re.compile(r"^\s*([+-]?)(\d+)\s+(\d+):(\d+):(\d+(?:\.\d+)?)\s*$")
_MONTH_UNITS = frozenset({"YEAR", "MONTH"})
_CONSTANTS = {"nan": "NaN", "infinity": "Infinity"}
_NOT_IN = {"snowflake": {exp.DType.UUID: "uuid", exp.DType.TIMETZ: "time with time zone"}}
_STRUCTURAL_REFUSED = frozenset({"postgres", "snowflake"})
_PADDED_CHAR = frozenset({"duckdb", "snowflake"})  # engines whose char is not Trino's padded char


def trino_types(tree: exp.Expr, *, dialect: str) -> exp.Expr:
    """Translate Trino's type syntax in `tree` (in place) for `dialect`; returns the tree."""
    _refuse_interval_results(tree, every_unit=dialect == "snowflake")
    for change in list(tree.find_all(exp.AtTimeZone, exp.Anonymous)):
        changed = _zone_change(change)
        if changed is not change:
            if change is tree:
                tree = changed
            else:
                change.replace(changed)

    def translate(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.DataType):
            _refuse_unknown(node, dialect)
            if dialect in _STRUCTURAL_REFUSED:
                _refuse_structural(node, dialect)
        elif isinstance(node, exp.Cast):
            return _cast(node, dialect)
        elif isinstance(node, exp.Interval):
            return _interval(node)
        elif isinstance(node, exp.Anonymous) and node.name.lower() in _CONSTANTS and not node.expressions:
            return exp.cast(exp.Literal.string(_CONSTANTS[node.name.lower()]), exp.DType.DOUBLE)
        elif dialect == "postgres" and isinstance(node, exp.HexString):
            return exp.cast(exp.Literal.string("\\x" + node.name), exp.DType.VARBINARY)
        elif dialect in _STRUCTURAL_REFUSED:
            _refuse_structural(node, dialect)
        return node

    return tree.transform(translate, copy=False)


def _zone_change(node: exp.Expr) -> exp.Expr:
    """`x AT TIME ZONE 'z'` (x a timestamp with time zone) is, in Trino, the same instant shown in zone z: the
    engines' AT TIME ZONE makes a local timestamp of it instead, so x is sent as it is and the frontend shows it
    in z (sql/trino_output_types.py carries z). with_timezone(ts, 'z') reads the local timestamp ts in zone z:
    the engines' `ts AT TIME ZONE 'z'` for a timestamp without zone. Only where the operand's type is derived."""
    derived = derive(node)
    if derived is None or derived.zone is None:
        return node
    if isinstance(node, exp.AtTimeZone):
        operand: exp.Expr = node.this
        return operand
    if isinstance(node, exp.Anonymous) and node.name.lower() == "with_timezone":
        return exp.AtTimeZone(this=node.expressions[0], zone=node.expressions[1])
    return node


def _refuse_structural(node: exp.Expr, dialect: str) -> None:
    """PostgreSQL has composite types and arrays, but no anonymous rows, no maps, and only rectangular arrays
    of arrays (typed as one array): none reads back as Trino's row, map or array(array). Snowflake's ARRAY and
    OBJECT are semi-structured (untyped JSON): none reads back as a typed array, map or row either."""
    name = None
    if dialect == "snowflake" and (isinstance(node, exp.Array)
                                   or (isinstance(node, exp.DataType) and node.this == exp.DType.ARRAY)):
        name = "array"
    if isinstance(node, exp.Struct) or (isinstance(node, exp.DataType) and node.this == exp.DType.STRUCT):
        name = "row"
    elif isinstance(node, exp.Map | exp.VarMap) or (isinstance(node, exp.DataType) and node.this == exp.DType.MAP):
        name = "map"
    elif isinstance(node, exp.Array) and any(isinstance(e, exp.Array) for e in node.expressions):
        name = "array(array)"
    if name is not None:
        raise NotSupported(f"Type {name} is not supported by this gateway's {dialect} backend")


def _refuse_unknown(kind: exp.DataType, dialect: str) -> None:
    name = _NO_BACKEND_HAS.get(kind.this) or _NOT_IN.get(dialect, {}).get(kind.this)
    if name is not None:
        raise NotSupported(f"Type {name} is not supported by this gateway's {dialect} backend")


def _precision(kind: exp.DataType) -> int | None:
    if not kind.expressions:
        return None
    value = kind.expressions[0]
    literal = value.this if isinstance(value, exp.DataTypeParam) else value
    return int(literal.name) if isinstance(literal, exp.Literal) and literal.name.isdigit() else None


def _cast(node: exp.Cast, dialect: str) -> exp.Expr:
    kind = node.to
    if kind.this in _TRINO_NAMES:
        return _temporal(node, kind, dialect)
    if kind.this == exp.DType.DECIMAL and not kind.expressions and isinstance(node.this, exp.Literal):
        shape = literal_decimal_shape(node.this.name)  # DECIMAL '1.50' is decimal(3,2), not the engine's default
        if shape is not None:
            node.set("to", exp.DataType.build(f"DECIMAL({shape[0]}, {shape[1]})"))
    if kind.this == exp.DType.CHAR and dialect in _PADDED_CHAR:
        length = _precision(kind)
        if length is not None:
            text = exp.cast(node.this, exp.DType.VARCHAR)
            return exp.func("rpad", text, exp.Literal.number(length), exp.Literal.string(" "))
    if kind.this == exp.DType.INTERVAL:
        unit = kind.find(exp.IntervalSpan, exp.Var)
        first = unit.this if isinstance(unit, exp.IntervalSpan) else unit
        if isinstance(first, exp.Var) and first.name.upper() in _MONTH_UNITS:
            raise NotSupported("Type interval year to month is not supported as a cast target by this gateway's "
                               f"{dialect} backend; add month intervals to dates or timestamps instead")
        node.set("to", exp.DataType.build("INTERVAL"))
    return node


def _temporal(node: exp.Cast, kind: exp.DataType, dialect: str) -> exp.Expr:
    precision = _precision(kind)
    value = node.this
    literal = value.name if isinstance(value, exp.Literal) and value.is_string else None
    if precision is None and literal is not None:
        fraction = _FRACTION.search(literal)
        precision = len(fraction.group(1)) if fraction else 0
    name = _TRINO_NAMES[kind.this].format(precision if precision is not None else KEPT_DIGITS)
    limit = _MAX_PRECISION.get(dialect, {}).get(kind.this, KEPT_DIGITS)
    if precision is not None and precision > limit:
        raise NotSupported(f"Type {name} is not supported by this gateway's {dialect} backend "
                           f"(its largest precision is {limit})")
    if literal is not None:
        fraction = _FRACTION.search(literal)
        if fraction and fraction.group(1)[KEPT_DIGITS:].strip("0"):
            raise NotSupported(f"A {name} value with digits beyond microseconds is not supported by this "
                               f"gateway's {dialect} backend (it would be rounded); give at most 6 digits")
        if (dialect == "duckdb" and kind.this == exp.DType.TIMESTAMP and precision is not None
                and precision > KEPT_DIGITS and not NANOSECOND_RANGE[0] <= literal.strip()[:10] <= NANOSECOND_RANGE[1]):
            raise NotSupported(f"A {name} value outside {NANOSECOND_RANGE[0]} to {NANOSECOND_RANGE[1]} is not "
                               f"supported by this gateway's duckdb backend (it keeps nanosecond timestamps as "
                               f"64-bit counts); use timestamp(6)")
        if kind.this in (exp.DType.TIMESTAMPTZ, exp.DType.TIMETZ):
            spaced = _SPACED_OFFSET.match(literal)
            if spaced:
                node.set("this", exp.Literal.string(spaced.group(1) + spaced.group(2)))
    if (dialect == "postgres" or (dialect == "duckdb" and _is_output_column(node))) and kind.expressions \
            and precision is not None and precision < KEPT_DIGITS:
        # PostgreSQL rounds to p itself, to 24:00:00 past a day's last instant (which no client reads), DuckDB
        # to milliseconds for p <= 3 (so .9445 would become .945, then .95): the engine keeps microseconds and the
        # encoder rounds once to the declared precision as Trino does (sql/trino_output_types.py)
        node.set("to", exp.DataType(this=kind.this))
    return node


def _is_output_column(node: exp.Expr) -> bool:
    """Whether `node` is a result column of the statement, whose declared type the encoder rounds to."""
    parent = node.parent.parent if isinstance(node.parent, exp.Alias) else node.parent
    column = node.parent if isinstance(node.parent, exp.Alias) else node
    return isinstance(parent, exp.Select) and parent.parent is None and column in parent.expressions


def _interval(node: exp.Interval) -> exp.Expr:
    unit = node.args.get("unit")
    if not isinstance(unit, exp.IntervalSpan):
        return node
    span = f"{unit.this.name} TO {unit.expression.name}".upper()
    text = node.this.name if isinstance(node.this, exp.Literal) else None
    pattern = {"YEAR TO MONTH": _YEAR_TO_MONTH, "DAY TO SECOND": _DAY_TO_SECOND}.get(span)
    match = pattern.match(text) if pattern is not None and text is not None else None
    if match is None:
        raise NotSupported(f"Interval literal {span} is not supported unless written as Trino writes it "
                           f"('1-2' YEAR TO MONTH, '1 02:03:04.5' DAY TO SECOND)")
    sign, *fields = match.groups()
    if span == "YEAR TO MONTH":
        spelled = f"{sign}{fields[0]} years {sign}{fields[1]} months"
    else:
        days, hours, minutes, seconds = fields
        spelled = f"{sign}{days} days {sign}{int(hours):02d}:{int(minutes):02d}:{seconds}"
    return exp.Interval(this=exp.Literal.string(spelled))


def _is_month_interval(node: exp.Expr) -> bool:
    if isinstance(node, exp.Interval):
        unit = node.args.get("unit")
        first = unit.this if isinstance(unit, exp.IntervalSpan) else unit
        return isinstance(first, exp.Var) and first.name.upper() in _MONTH_UNITS
    return False


def _refuse_interval_results(tree: exp.Expr, *, every_unit: bool) -> None:
    """Month intervals (with `every_unit`, any interval: Snowflake has no interval values) anywhere but added
    to (or subtracted from) a date or timestamp: DuckDB and PostgreSQL hand them out as a number of days (30 a
    month), so as a value of their own they would come back wrong. Fail closed: only `x + INTERVAL ...`,
    `INTERVAL ... + x` and `x - INTERVAL ...`, with x not itself an interval, are translated."""
    for interval in tree.find_all(exp.Interval):
        months = _is_month_interval(interval)
        if not months and not every_unit:
            continue
        node: exp.Expr = interval
        while isinstance(node.parent, exp.Paren):
            node = node.parent
        parent = node.parent
        added = isinstance(parent, exp.Add) or (isinstance(parent, exp.Sub) and parent.expression is node)
        if added and parent is not None:
            other = parent.this if parent.expression is node else parent.expression
            while isinstance(other, exp.Paren | exp.Neg):
                other = other.this
            if not isinstance(other, exp.Interval):
                continue
        if not months:
            raise NotSupported("Type interval day to second is not supported by this gateway's snowflake backend "
                               "except added to or subtracted from a date or timestamp; return the seconds as a "
                               "number instead")
        raise NotSupported("Type interval year to month is not supported by this gateway's backends except "
                           "added to or subtracted from a date or timestamp (they hand it out as days); "
                           "return months as a number instead (14 for INTERVAL '1-2' YEAR TO MONTH)")
