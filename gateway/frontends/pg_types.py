"""Gateway column types as PostgreSQL type OIDs, result values in PostgreSQL's text and binary formats, and
bound parameter values (text or binary) as SQL literal trees.

Types PostgreSQL clients cannot decode from the gateway (arrays, maps, rows, intervals, json) are sent as
`text` in their PostgreSQL text spelling, which every client reads.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import struct
import uuid
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from gateway.errors import UserError
from gateway.pg_types import pg_type_for
from gateway.sql.postgres_input import bytea_input
from gateway.types import SqlType

BOOL, BYTEA, INT8, INT2, INT4, TEXT, FLOAT4, FLOAT8, UNKNOWN = 16, 17, 20, 21, 23, 25, 700, 701, 705
VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, NUMERIC, UUID, BPCHAR = 1043, 1082, 1083, 1114, 1184, 1700, 2950, 1042
INTERVAL, JSON_OID, JSONB = 1186, 114, 3802

# The PostgreSQL type names clients write in casts or Parse, for the parameter types the gateway decodes.
TYPE_NAMES = {BOOL: "boolean", BYTEA: "bytea", INT8: "bigint", INT2: "smallint", INT4: "integer", TEXT: "text",
              FLOAT4: "real", FLOAT8: "double precision", VARCHAR: "varchar", DATE: "date", TIME: "time",
              TIMESTAMP: "timestamp", TIMESTAMPTZ: "timestamptz", NUMERIC: "numeric", UUID: "uuid", BPCHAR: "char",
              JSON_OID: "json", JSONB: "jsonb", INTERVAL: "interval"}
_OID_BY_NAME = {name: oid for oid, name in TYPE_NAMES.items()} | {
    "int": INT4, "int4": INT4, "int2": INT2, "int8": INT8, "float4": FLOAT4, "float8": FLOAT8, "double": FLOAT8,
    "decimal": NUMERIC, "bool": BOOL, "timestamp with time zone": TIMESTAMPTZ, "varchar": VARCHAR,
    "character varying": VARCHAR, "string": TEXT}

POSTGRES_EPOCH = dt.datetime(2000, 1, 1)
POSTGRES_EPOCH_DATE = dt.date(2000, 1, 1)
POSTGRES_EPOCH_UTC = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def oid_of(sql_type: SqlType) -> tuple[int, int]:
    """(type OID, type size) of a gateway type; `text` for the types PostgreSQL clients cannot decode. The one
    table is `gateway.pg_types`, which pg_catalog describes columns with too."""
    described = pg_type_for(sql_type)
    return described.oid, described.typlen


def oid_for_type_name(name: str) -> int:
    """The OID of a PostgreSQL type as a cast spells it (`int`, `varchar(10)`, `timestamptz`), else text."""
    base = name.lower().split("(", 1)[0].strip()
    return _OID_BY_NAME.get(base, TEXT)


# -- text format ------------------------------------------------------------------------------------------------


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = text_value(value)
    if text == "" or any(c in text for c in ' ,{}"\\') or text.upper() == "NULL":
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _interval_text(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02}:{minutes:02}:{seconds:02}" + (f".{value.microseconds:06}" if value.microseconds else "")
    days = f"{value.days} day{'s' if value.days != 1 else ''} " if value.days else ""
    return f"{sign}{days}{clock}"


def text_value(value: Any) -> str:
    """A result value as PostgreSQL's text output spells it."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, decimal.Decimal):
        return "NaN" if value.is_nan() else format(value, "f")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _interval_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return "{" + ",".join(_array_element(v) for v in value) + "}"
    if isinstance(value, dict):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


# -- binary format ----------------------------------------------------------------------------------------------


def _numeric_binary(value: Any) -> bytes:
    """PostgreSQL's numeric wire form: base-10000 digit groups, the first group's weight, sign, scale."""
    number = decimal.Decimal(value)
    if number.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    integer, _, fraction = format(number.copy_abs(), "f").partition(".")  # abs() rounds to 28 digits
    scale = len(fraction)
    integer = integer.lstrip("0")
    integer = integer.rjust(-(-len(integer) // 4) * 4, "0")
    fraction = fraction.ljust(-(-len(fraction) // 4) * 4, "0")
    groups = [int(integer[i:i + 4]) for i in range(0, len(integer), 4)]
    weight = len(groups) - 1
    groups += [int(fraction[i:i + 4]) for i in range(0, len(fraction), 4)]
    while groups and groups[0] == 0:  # a pure fraction: its first digits sit below the point
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    sign = 0x4000 if number.is_signed() and number != 0 else 0
    return struct.pack(f"!hhHh{len(groups)}h", len(groups), weight, sign, scale, *groups)


def _timestamp_binary(value: Any) -> bytes:
    delta = value - (POSTGRES_EPOCH_UTC if value.tzinfo is not None else POSTGRES_EPOCH)
    return struct.pack("!q", (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _time_binary(value: dt.time) -> bytes:
    return struct.pack("!q", ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond)


def _uuid_binary(value: Any) -> bytes:
    return value.bytes if isinstance(value, uuid.UUID) else uuid.UUID(str(value)).bytes


_BINARY: dict[int, Callable[[Any], bytes]] = {
    BOOL: lambda v: b"\x01" if v else b"\x00",
    INT2: lambda v: struct.pack("!h", int(v)),
    INT4: lambda v: struct.pack("!i", int(v)),
    INT8: lambda v: struct.pack("!q", int(v)),
    FLOAT4: lambda v: struct.pack("!f", float(v)),
    FLOAT8: lambda v: struct.pack("!d", float(v)),
    NUMERIC: _numeric_binary,
    DATE: lambda v: struct.pack("!i", (v - POSTGRES_EPOCH_DATE).days),
    TIME: _time_binary,
    TIMESTAMP: _timestamp_binary,
    TIMESTAMPTZ: _timestamp_binary,
    BYTEA: bytes,
    UUID: _uuid_binary,
}


def encode(value: Any, oid: int, binary: bool) -> bytes | None:
    """One result value in the format the client asked for; text-typed values are UTF-8 either way."""
    if value is None:
        return None
    if binary:
        encoder = _BINARY.get(oid)
        if encoder is not None:
            return encoder(value)
    return text_value(value).encode("utf-8")


# -- parameters -------------------------------------------------------------------------------------------------

_NUMBERS = {INT2, INT4, INT8, FLOAT4, FLOAT8, NUMERIC}


class ParameterError(ValueError):
    """A bound parameter value that cannot be read as its declared type (the text is safe to show)."""


def _decode_binary(data: bytes, oid: int) -> Any:
    try:
        if oid == BOOL:
            return data != b"\x00"
        if oid in (INT2, INT4, INT8):
            return int.from_bytes(data, "big", signed=True) if len(data) in (2, 4, 8) else _bad(oid)
        if oid == FLOAT4:
            return struct.unpack("!f", data)[0]
        if oid == FLOAT8:
            return struct.unpack("!d", data)[0]
        if oid == NUMERIC:
            return _numeric_from_binary(data)
        if oid == DATE:
            return POSTGRES_EPOCH_DATE + dt.timedelta(days=struct.unpack("!i", data)[0])
        if oid in (TIMESTAMP, TIMESTAMPTZ):
            moment = POSTGRES_EPOCH + dt.timedelta(microseconds=struct.unpack("!q", data)[0])
            return moment.replace(tzinfo=dt.UTC) if oid == TIMESTAMPTZ else moment
        if oid == UUID:
            return uuid.UUID(bytes=data)
        if oid == BYTEA:
            return bytes(data)
        return data.decode("utf-8")
    except (struct.error, ValueError, ArithmeticError):
        return _bad(oid)


def _bad(oid: int) -> Any:
    raise ParameterError(f"invalid binary value for a parameter of type {TYPE_NAMES.get(oid, oid)}")


def _numeric_from_binary(data: bytes) -> decimal.Decimal:
    count, weight, sign, scale = struct.unpack_from("!hhHh", data)
    if len(data) != 8 + 2 * count or count < 0:
        raise ValueError("numeric length")
    if sign == 0xC000:
        return decimal.Decimal("NaN")
    digits = struct.unpack_from(f"!{count}h", data, 8)
    if any(not 0 <= d < 10000 for d in digits) or not 0 <= scale <= 16383:
        raise ValueError("numeric digits")
    with decimal.localcontext(prec=4 * (max(count, weight + 1) + 2) + scale):  # exact: never the default 28 digits
        value = sum((decimal.Decimal(d).scaleb(4 * (weight - i)) for i, d in enumerate(digits)), decimal.Decimal(0))
        value = value.quantize(decimal.Decimal(1).scaleb(-scale))
    return value.copy_negate() if sign == 0x4000 else value  # unary minus would round to 28 digits


def parameter_literal(data: bytes | None, oid: int, binary: bool) -> exp.Expr:
    """A bound value as a constant tree: numbers as numbers, other typed values as a cast string, untyped
    (text, unknown) values as strings — as PostgreSQL reads an untyped literal."""
    if data is None:
        return exp.Null()
    value: Any = _decode_binary(data, oid) if binary else _text_parameter(data)
    if oid == BOOL:
        return exp.Boolean(this=value if isinstance(value, bool) else str(value).lower() in ("t", "true", "1", "on",
                                                                                              "y", "yes"))
    if oid in _NUMBERS:
        try:
            number = decimal.Decimal(str(value).strip())
        except decimal.InvalidOperation:
            raise ParameterError(f"invalid input syntax for type {TYPE_NAMES[oid]}: {str(value)[:40]!r}") from None
        if not number.is_finite():
            return exp.cast(exp.Literal.string(str(number)), TYPE_NAMES[oid])
        if oid in (INT2, INT4, INT8) and number != number.to_integral_value():
            raise ParameterError(f"invalid input syntax for type {TYPE_NAMES[oid]}: {str(value)[:40]!r}")
        return exp.Literal.number(str(int(number)) if oid in (INT2, INT4, INT8) else format(number, "f"))
    if oid == BYTEA:
        raw = value if isinstance(value, bytes) else _bytea_from_text(str(value))
        return exp.cast(exp.HexString(this=raw.hex()), exp.DType.VARBINARY)  # every backend's own binary literal
    text = text_value(value) if not isinstance(value, str) else value
    if oid in (DATE, TIME, TIMESTAMP, TIMESTAMPTZ, UUID, INTERVAL):
        return exp.cast(exp.Literal.string(text), TYPE_NAMES[oid])
    return exp.Literal.string(text)


def _text_parameter(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParameterError("invalid UTF-8 in a parameter value") from None


def _bytea_from_text(text: str) -> bytes:
    try:
        return bytea_input(text)
    except UserError as error:
        raise ParameterError(error.message) from None
