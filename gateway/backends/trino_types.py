"""Trino's result shapes -> the gateway's: a column's `typeSignature` -> `SqlType`, and each JSON value back to
the Python value the gateway's own Trino encoder (gateway/frontends/trino_values.py) writes out again.

The remote already speaks the gateway's type system (both are Trino's), so the mapping is one to one; a type
the gateway does not model (ipaddress, hyperloglog, geometry, ...) is shown as varchar with the remote's
text for it. Values are decoded losslessly: decimals from their digits (never through float), varbinary
from base64, timestamps and times by hand (datetime.fromisoformat would accept forms Trino never writes).
The one loss: fractional seconds beyond microseconds (timestamp(7..12)) are cut to microseconds, the
resolution of Python's datetime that the encoder works in.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from datetime import time as time_of_day
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway import types as t
from gateway.errors import UserError

Decoder = Callable[[Any], Any]

_PLAIN = {name: t.SqlType(name) for name in ("boolean", "tinyint", "smallint", "integer", "bigint", "real",
                                            "double", "varbinary", "date", "uuid", "json", "unknown",
                                            "interval day to second", "interval year to month")}
_TIMESTAMP = re.compile(r"^(-?\d{4,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?(?: (\S+))?$")
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?([+-]\d{2}:\d{2})?$")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_INTERVAL = re.compile(r"^(-?)(\d+) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class RemoteValueError(UserError):
    """A value the remote sent that the gateway cannot represent (a year beyond 9999, an unknown zone)."""

    default_name = "NUMERIC_VALUE_OUT_OF_RANGE"


def _argument(argument: Mapping[str, Any]) -> Any:
    return argument.get("value")


def to_sql_type(signature: Mapping[str, Any]) -> t.SqlType:
    """A result column's `typeSignature` (`{"rawType": ..., "arguments": [...]}`) -> SqlType. Argument kinds
    are spelled LONG/TYPE/NAMED_TYPE by current servers, LONG_LITERAL/TYPE_SIGNATURE/NAMED_TYPE_SIGNATURE by
    old ones; only the value is read."""
    raw = str(signature.get("rawType", "")).lower()
    arguments = [_argument(a) for a in signature.get("arguments", []) if isinstance(a, Mapping)]
    if raw in _PLAIN:
        return _PLAIN[raw]
    if raw in ("varchar", "char"):
        length = int(arguments[0]) if arguments else (t.UNBOUNDED_VARCHAR if raw == "varchar" else 1)
        return t.varchar(length) if raw == "varchar" else t.SqlType("char", (length,))
    if raw == "decimal" and len(arguments) == 2:
        return t.decimal(int(arguments[0]), int(arguments[1]))
    if raw in ("timestamp", "timestamp with time zone", "time", "time with time zone"):
        precision = int(arguments[0]) if arguments else 3
        kind = t.timestamp if raw.startswith("timestamp") else t.time
        return kind(precision, with_time_zone=raw.endswith("with time zone"))
    if raw == "array" and len(arguments) == 1:
        return t.array(to_sql_type(arguments[0]))
    if raw == "map" and len(arguments) == 2:
        return t.map_of(to_sql_type(arguments[0]), to_sql_type(arguments[1]))
    if raw == "row":
        fields = [(str((a.get("fieldName") or {}).get("name") or f"field{i}"), to_sql_type(a["typeSignature"]))
                  for i, a in enumerate(arguments) if isinstance(a, Mapping) and "typeSignature" in a]
        return t.row(fields)
    return t.VARCHAR  # ipaddress, hyperloglog, geometry, ...: the remote's text


def _fraction_microseconds(digits: str | None) -> int:
    return int((digits or "").ljust(6, "0")[:6])


def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    offset = _OFFSET.match(name)
    if offset is not None:
        sign = -1 if offset[1] == "-" else 1
        return timezone(sign * timedelta(hours=int(offset[2]), minutes=int(offset[3])))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise RemoteValueError(f"The backend returned a time zone the gateway does not know: {name[:40]!r}") from None


def _out_of_range(kind: str, value: Any) -> RemoteValueError:
    return RemoteValueError(f"A {kind} value from the backend ({str(value)[:40]}) is outside the range the "
                            "gateway can represent; filter it out or cast it to varchar")


def _timestamp(text: str) -> datetime:
    found = _TIMESTAMP.match(text)
    if found is None:
        raise _out_of_range("timestamp", text)
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         _fraction_microseconds(fraction))
    except ValueError:
        raise _out_of_range("timestamp", text) from None
    return value if zone is None else value.replace(tzinfo=_zone(zone))


def _time(text: str) -> time_of_day:
    found = _TIME.match(text)
    if found is None:
        raise _out_of_range("time", text)
    hour, minute, second, fraction, offset = found.groups()
    try:
        return time_of_day(int(hour), int(minute), int(second), _fraction_microseconds(fraction),
                           tzinfo=_zone(offset) if offset else None)
    except ValueError:
        raise _out_of_range("time", text) from None


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _out_of_range("date", text) from None


def _double(value: Any) -> float:
    if isinstance(value, str):
        if value in _NON_FINITE:
            return _NON_FINITE[value]
        raise _out_of_range("double", value)
    return float(value)


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise _out_of_range("decimal", value) from None


def _varbinary(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _out_of_range("varbinary", value[:20]) from None


def _interval(text: str) -> timedelta:
    found = _INTERVAL.match(text)
    if found is None:
        raise _out_of_range("interval", text)
    sign, days, hours, minutes, seconds, fraction = found.groups()
    value = timedelta(days=int(days), hours=int(hours), minutes=int(minutes), seconds=int(seconds),
                      microseconds=_fraction_microseconds(fraction))
    return -value if sign else value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


_DECODERS: dict[str, Decoder] = {
    "double": _double, "real": _double, "decimal": _decimal, "date": _date, "timestamp": _timestamp,
    "timestamp with time zone": _timestamp, "time": _time, "time with time zone": _time, "varbinary": _varbinary,
    "interval day to second": _interval,
}
_AS_SENT = frozenset({"boolean", "tinyint", "smallint", "integer", "bigint", "varchar", "char", "unknown", "uuid",
                      "json", "interval year to month"})


def decoder_for(kind: t.SqlType) -> Decoder | None:
    """How one JSON value of a `kind` column becomes the gateway's Python value; None where it already is."""
    name = kind.name
    if name in _AS_SENT:
        return None
    if name in _DECODERS:
        return _DECODERS[name]
    if name == "array":
        element = decoder_for(kind.children[0])
        if element is None:
            return None
        return lambda value: [None if v is None else element(v) for v in value]
    if name == "map":
        key, inner = _key_decoder(kind.children[0]), decoder_for(kind.children[1])
        if key is None and inner is None:
            return None
        keys, values = key or _text, inner or _same
        return lambda value: {keys(k): (None if v is None else values(v)) for k, v in value.items()}
    if name == "row":
        fields = [decoder_for(c) for c in kind.children]
        if all(f is None for f in fields):
            return None
        return lambda value: [v if v is None or f is None else f(v) for f, v in zip(fields, value, strict=True)]
    return _text


def _same(value: Any) -> Any:
    return value


def _key_decoder(kind: t.SqlType) -> Decoder | None:
    """Map keys arrive as JSON object keys, text whatever their type: back to the key type's value (the
    encoder writes each key through its type's encoder, then as text)."""
    if kind.name in ("tinyint", "smallint", "integer", "bigint"):
        return int
    if kind.name == "boolean":
        return lambda k: k == "true"
    return decoder_for(kind)


def row_decoder(kinds: list[t.SqlType]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """Decodes whole rows (a JSON list per row) into tuples."""
    indexed = [(i, d) for i, d in enumerate(decoder_for(k) for k in kinds) if d is not None]
    if not indexed:
        return tuple

    def decode(row: list[Any]) -> tuple[Any, ...]:
        values = list(row)
        for index, decode_one in indexed:
            value = values[index]
            if value is not None:
                values[index] = decode_one(value)
        return tuple(values)

    return decode


_SCALAR_TEXT = re.compile(r"^(?P<base>[a-z][a-z ]*?)(?:\((?P<args>\d+(?:\s*,\s*\d+)*)\))?(?P<zone> with time zone)?$")
_NESTED_TEXT = re.compile(r"^(?P<base>array|map|row)\((?P<inner>.*)\)$", re.DOTALL)


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def _row_field(text: str) -> tuple[str, t.SqlType]:
    if text.startswith('"'):
        end = text.index('"', 1)
        while end + 1 < len(text) and text[end + 1] == '"':  # "" inside a quoted name
            end = text.index('"', end + 2)
        return text[1:end].replace('""', '"'), type_from_text(text[end + 1:])
    name, _, rest = text.partition(" ")
    return name, type_from_text(rest)


def type_from_text(text: str) -> t.SqlType:
    """A type as information_schema.columns.data_type writes it ('decimal(15,2)', 'array(varchar(3))',
    'row("a" integer, "b" timestamp(3) with time zone)') -> SqlType; unknown types are varchar."""
    text = text.strip()
    nested = _NESTED_TEXT.match(text.lower() if not text.lower().startswith("row(") else "row(" + text[4:])
    if nested is not None:
        parts = _split_top_level(nested["inner"])
        if nested["base"] == "array" and len(parts) == 1:
            return t.array(type_from_text(parts[0]))
        if nested["base"] == "map" and len(parts) == 2:
            return t.map_of(type_from_text(parts[0]), type_from_text(parts[1]))
        if nested["base"] == "row":
            return t.row([_row_field(p) for p in parts])
        return t.VARCHAR
    scalar = _SCALAR_TEXT.match(text.lower())
    if scalar is None:
        return t.VARCHAR
    arguments = [{"kind": "LONG", "value": int(a)} for a in (scalar["args"] or "").split(",") if a.strip()]
    return to_sql_type({"rawType": scalar["base"].strip() + (scalar["zone"] or ""), "arguments": arguments})
