"""Trino's wire shapes for types and values: typeSignature objects and JSON encoding of each value.

Values are encoded as Trino encodes them (clients parse them by type): decimals, dates, times and timestamps
as strings, doubles as numbers or "NaN"/"Infinity"/"-Infinity", varbinary as base64, arrays as lists, maps
as objects, rows as positional lists.

Each encoder accepts only the Python value its type promises, within the range clients can read back (the
Trino clients parse dates and timestamps with Python's `datetime` and Java's `java.time`: years 1 to 9999).
Anything else — DuckDB hands out dates beyond year 9999 as text, times of 24:00:00, non-finite decimals —
raises `ValueOutOfRange`, which ends the query with NUMERIC_VALUE_OUT_OF_RANGE instead of a page that
clients cannot read (or a crashed producer).
"""

from __future__ import annotations

import base64
import contextlib
import math
import struct
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from datetime import time as time_of_day
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from gateway.errors import UserError
from gateway.types import UNBOUNDED_VARCHAR, SqlType

Encoder = Callable[[Any], Any]


class ValueOutOfRange(UserError):
    default_name = "NUMERIC_VALUE_OUT_OF_RANGE"


def _refuse(kind: str, value: Any) -> ValueOutOfRange:
    shown = str(value) if isinstance(value, str | int | float | Decimal | date | timedelta) else type(value).__name__
    return ValueOutOfRange(f"A {kind} value in the result ({shown[:40]}) is outside the range Trino clients can "
                           f"read; filter it out or cast it to varchar")


def type_signature(kind: SqlType) -> dict[str, Any]:
    """The `typeSignature` object Trino clients index into (arguments[0] for varchar, decimal, ...)."""
    arguments: list[dict[str, Any]]
    if kind.name in ("array", "map"):
        arguments = [{"kind": "TYPE", "value": type_signature(child)} for child in kind.children]
    elif kind.name == "row":
        arguments = [
            {"kind": "NAMED_TYPE", "value": ({"fieldName": {"name": name}} if name else {})
             | {"typeSignature": type_signature(child)}}
            for name, child in zip(kind.field_names, kind.children, strict=True)
        ]
    else:
        arguments = [{"kind": "LONG", "value": value} for value in kind.arguments]
    signature: dict[str, Any] = {"rawType": kind.name, "arguments": arguments}
    return signature


def column_json(name: str, kind: SqlType) -> dict[str, Any]:
    return {"name": name, "type": kind.display(), "typeSignature": type_signature(kind)}


def _double(value: float) -> float | str:
    if not isinstance(value, float | int) or isinstance(value, bool):
        raise _refuse("double", value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _real(value: float) -> float | str:
    """A float32 as Trino prints it: the shortest decimal that reads back as the same float32 (REAL '1.1' is
    1.1, not the 1.100000023841858 its widening to a double would show)."""
    encoded = _double(value)
    if isinstance(encoded, str):
        return encoded
    try:
        single = struct.pack("<f", encoded)
    except OverflowError:  # a double beyond float32's range: not a real the backend could hand out
        raise _refuse("real", value) from None
    for digits in range(2, 10):  # as Java writes a float: at least d.d; nine digits identify any float32
        shortest = float(f"{encoded:.{digits}g}")
        with contextlib.suppress(OverflowError):  # rounded up past float32's largest value
            if struct.pack("<f", shortest) == single:
                return shortest
    return encoded


def _fraction(microseconds: int, precision: int) -> str:
    if precision <= 0:
        return ""
    digits = f"{microseconds:06d}" + "000000"  # up to picoseconds; Python keeps microseconds
    return "." + digits[:precision]


def _rounded(value: datetime, precision: int) -> datetime:
    """`value` rounded half up to `precision` fractional digits, as Trino casts to a lower precision."""
    if precision >= 6:
        return value
    unit = 10 ** (6 - precision)
    micros = (value.microsecond + unit // 2) // unit * unit
    return value.replace(microsecond=0) + timedelta(microseconds=micros)


def _timestamp(precision: int) -> Encoder:
    def encode(value: datetime) -> str:
        if not isinstance(value, datetime):
            raise _refuse("timestamp", value)
        try:
            value = _rounded(value, precision)
        except OverflowError:  # 9999-12-31 23:59:59.9 rounded past year 9999
            raise _refuse("timestamp", value) from None
        return f"{_date_time(value)}{_fraction(value.microsecond, precision)}"

    return encode


def _timestamp_with_zone(precision: int, zone: tzinfo | None) -> Encoder:
    def encode(value: datetime) -> str:
        if not isinstance(value, datetime):
            raise _refuse("timestamp with time zone", value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("UTC"))
        try:
            value = _rounded(value, precision)
            if zone is not None:
                value = value.astimezone(zone)
        except OverflowError:  # the shift to the zone (or the rounding) leaves years 1..9999
            raise _refuse("timestamp with time zone", value) from None
        name = _zone_name(value)
        return f"{_date_time(value)}{_fraction(value.microsecond, precision)} {name}"

    return encode


def _date_time(value: datetime) -> str:
    # Not strftime: glibc writes year 5 as "5", and clients expect four digits.
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}")


# Zone ids Trino's TimeZoneKey prints as UTC.
_UTC_ALIASES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu",
                          "Z", "GMT", "Etc/GMT", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "GMT0", "GMT+0", "GMT-0",
                          "Etc/Greenwich", "Greenwich"})


def _zone_name(value: datetime) -> str:
    key = getattr(value.tzinfo, "key", None)
    if isinstance(key, str):
        return "UTC" if key in _UTC_ALIASES else key
    offset = value.utcoffset() or timedelta(0)
    if offset == timedelta(0):
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _time(precision: int) -> Encoder:
    def encode(value: time_of_day) -> str:
        if not isinstance(value, time_of_day):
            raise _refuse("time", value)
        if precision < 6:  # rounded half up; past midnight it wraps, as Trino's time does
            moment = _rounded(datetime.combine(date(2000, 1, 1), value), precision)
            value = moment.time().replace(tzinfo=value.tzinfo)
        text = f"{value:%H:%M:%S}{_fraction(value.microsecond, precision)}"
        if value.tzinfo is not None:
            offset = value.utcoffset() or timedelta(0)
            minutes = int(offset.total_seconds() // 60)
            text += f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        return text

    return encode


def _interval_day_to_second(value: timedelta) -> str:
    if not isinstance(value, timedelta):
        raise _refuse("interval", value)
    negative = value < timedelta(0)
    value = -value if negative else value
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{value.days} {hours:02d}:{minutes:02d}:{seconds:02d}.{value.microseconds // 1000:03d}"
    return "-" + text if negative else text


def _interval_year_to_month(value: int) -> str:
    """A count of months as Trino writes it: years-months (`1-2`, `-0-3`)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _refuse("interval year to month", value)
    years, months = divmod(abs(value), 12)
    return f"{'-' if value < 0 else ''}{years}-{months}"


def _decimal(_precision: int, scale: int) -> Encoder:
    """A decimal(p,s) value as Trino writes it: plain digits, exactly `scale` of them past the point (an engine
    value of another scale is rounded half up to it)."""
    unit = Decimal(1).scaleb(-scale)

    def encode(value: Decimal | int) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        if not isinstance(value, Decimal) or not value.is_finite():
            raise _refuse("decimal", value)
        if value.as_tuple().exponent != -scale:
            value = value.quantize(unit, rounding=ROUND_HALF_UP, context=_WIDE)
        return format(value, "f")  # never 1E+5

    return encode


_WIDE = Context(prec=80)


def _date(value: date) -> str:
    if isinstance(value, datetime):  # an engine's timestamp where Trino's type is date (d + INTERVAL '1' MONTH)
        if value.time() != time_of_day(0):
            raise _refuse("date", value)
        value = value.date()
    if not isinstance(value, date):
        raise _refuse("date", value)
    return value.isoformat()


def _varchar(length: int) -> Encoder:
    def encode(value: Any) -> str:
        text = value if isinstance(value, str) else str(value)
        return text if len(text) <= length else text[:length]  # CAST(x AS varchar(n)) cuts, as Trino does

    return encode


def _char(length: int) -> Encoder:
    def encode(value: Any) -> str:
        text = value if isinstance(value, str) else str(value)
        # Trino's char(n) is padded to n. Never cut here: the engines cut a cast themselves (DuckDB's and
        # Snowflake's rpad, PostgreSQL's char), and a PostgreSQL result column of bpchar reports no length.
        return text.ljust(length)

    return encode


def _varbinary(value: bytes) -> str:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise _refuse("varbinary", value)
    return base64.b64encode(value).decode("ascii")


def _uuid(value: Any) -> str:
    if isinstance(value, UUID):
        return str(value)
    try:
        return str(UUID(str(value)))
    except ValueError:
        raise _refuse("uuid", value) from None


def _text(value: Any) -> str:
    return str(value)


def encoder_for(kind: SqlType, zone: tzinfo | None = None) -> Encoder | None:
    """A function turning one backend value of `kind` into its JSON form; None where the value is already
    JSON as it is (integers, booleans, strings)."""
    name = kind.name
    if name == "varchar" and kind.arguments and kind.arguments[0] != UNBOUNDED_VARCHAR:
        return _varchar(kind.arguments[0])
    if name == "char" and kind.arguments:
        return _char(kind.arguments[0])
    if name in ("boolean", "tinyint", "smallint", "integer", "bigint", "varchar", "char", "unknown"):
        return None
    if name == "double":
        return _double
    if name == "real":
        return _real
    if name == "decimal":
        return _decimal(*kind.arguments)
    if name == "date":
        return _date
    if name == "timestamp":
        return _timestamp(kind.arguments[0])
    if name == "timestamp with time zone":
        return _timestamp_with_zone(kind.arguments[0], zone)
    if name in ("time", "time with time zone"):
        return _time(kind.arguments[0])
    if name == "varbinary":
        return _varbinary
    if name == "interval day to second":
        return _interval_day_to_second
    if name == "interval year to month":
        return _interval_year_to_month
    if name == "array":
        element = encoder_for(kind.children[0], zone)
        if element is None:
            return list
        return lambda value: [None if v is None else element(v) for v in value]
    if name == "map":
        key, val = (encoder_for(c, zone) or _identity for c in kind.children)
        return lambda value: {str(key(k)): (None if v is None else val(v)) for k, v in value.items()}
    if name == "row":
        fields = [encoder_for(c, zone) or _identity for c in kind.children]
        return lambda value: [None if v is None else f(v) for f, v in zip(fields, _row_values(value), strict=True)]
    if name == "uuid":
        return _uuid
    return _text  # json, and anything else textual


def time_zone(name: str) -> tzinfo:
    """A zone id (`Europe/Brussels`) or a fixed offset as the planner writes it (`+05:30`)."""
    if name[:1] in "+-" and name[1:3].isdigit():
        minutes = int(name[1:3]) * 60 + int(name[4:6] or 0)
        return timezone(timedelta(minutes=minutes if name[0] == "+" else -minutes))
    return ZoneInfo(name)


def _identity(value: Any) -> Any:
    return value


def _row_values(value: Any) -> Sequence[Any]:
    return list(value.values()) if isinstance(value, dict) else list(value)


class ValueNotEncodable(UserError):
    default_name = "NOT_SUPPORTED"


def encoding_failure(name: str, kind: SqlType, error: Exception) -> UserError:
    """The error ending a query whose column `name` holds a value its encoder cannot write: the refusal's own
    words for a value out of range, else a NOT_SUPPORTED naming the column and its type."""
    where = f"Column '{name}' of type {kind.display()}"
    if isinstance(error, ValueOutOfRange):
        return ValueOutOfRange(f"{where}: {error.message}")
    if isinstance(error, UserError):
        return UserError(f"{where}: {error.message}", error_name=error.error_name)
    return ValueNotEncodable(f"{where}: a value in the result cannot be encoded as Trino encodes "
                             f"{kind.display()} ({type(error).__name__}); cast the column to varchar")


def row_encoder(types: Sequence[SqlType], zone: tzinfo | None = None,
                names: Sequence[str] | None = None,
                zones: Sequence[str | None] | None = None) -> Callable[[Sequence[Any]], list[Any]]:
    """Encodes whole rows; the common all-plain case is a bare list() copy. Any failure of a value's encoder
    becomes the user error of `encoding_failure`, naming its column (`names`, else its position). A column's
    entry in `zones` (a zone id or ±hh:mm) shows its timestamps with time zone there instead of in `zone`."""
    own = list(zones) if zones is not None and len(zones) == len(types) else [None] * len(types)
    encoders = [encoder_for(kind, zone if name is None else time_zone(name)) for kind, name in zip(types, own,
                                                                                                   strict=True)]
    if all(e is None for e in encoders):
        return list
    indexed = [(i, e) for i, e in enumerate(encoders) if e is not None]
    labels = list(names) if names is not None else [f"_col{i}" for i in range(len(types))]

    def encode(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for index, encoder in indexed:
            value = values[index]
            if value is not None:
                try:
                    values[index] = encoder(value)
                except Exception as error:  # every failure ends the query with this error
                    raise encoding_failure(labels[index], types[index], error) from None
        return values

    return encode
