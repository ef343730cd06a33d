"""A compact, safe encoding of a result (column types + rows) for the shared cache tier.

JSON with values written by type (decimals, dates, timestamps as text; bytes as base64), then zlib.
Decoding is driven by the stored column types, never by the data, so a tampered cache entry can at worst
produce wrong values of the declared types — it cannot run code (unlike pickle).
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from gateway.relations import Column, Row
from gateway.types import SqlType

FORMAT = 1

Converter = Callable[[Any], Any]


def _float_out(value: float) -> Any:
    return value if math.isfinite(value) else repr(value)


def _float_in(value: Any) -> float:
    return float(value)


def _timedelta_out(value: timedelta) -> list[int]:
    return [value.days, value.seconds, value.microseconds]


def _timedelta_in(value: list[int]) -> timedelta:
    return timedelta(days=value[0], seconds=value[1], microseconds=value[2])


def _bytes_out(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _bytes_in(value: str) -> bytes:
    return base64.b64decode(value)


def _converters(kind: SqlType) -> tuple[Converter | None, Converter | None]:
    """(encode, decode) for one value of `kind`; None where JSON carries the value as it is."""
    name = kind.name
    if name in ("double", "real"):
        return _float_out, _float_in
    if name == "decimal":
        return str, Decimal
    if name == "date":
        return date.isoformat, date.fromisoformat
    if name in ("timestamp", "timestamp with time zone"):
        return datetime.isoformat, datetime.fromisoformat
    if name in ("time", "time with time zone"):
        return time.isoformat, time.fromisoformat
    if name == "varbinary":
        return _bytes_out, _bytes_in
    if name == "interval day to second":
        return _timedelta_out, _timedelta_in
    if name == "uuid":
        return str, UUID
    if name == "array":
        out, back = _converters(kind.children[0])
        return (None if out is None else lambda v: [None if x is None else out(x) for x in v],
                None if back is None else lambda v: [None if x is None else back(x) for x in v])
    if name == "map":
        (key_out, key_in), (val_out, val_in) = _converters(kind.children[0]), _converters(kind.children[1])
        ko, ki = key_out or _same, key_in or _same
        vo, vi = val_out or _same, val_in or _same
        return (lambda v: [[ko(k), None if x is None else vo(x)] for k, x in v.items()],
                lambda v: {ki(k): (None if x is None else vi(x)) for k, x in v})
    if name == "row":
        fields = [_converters(child) for child in kind.children]
        names = kind.field_names
        return (lambda v: [None if x is None else (f[0] or _same)(x)
                           for f, x in zip(fields, v.values() if isinstance(v, dict) else v, strict=True)],
                lambda v: {n: (None if x is None else (f[1] or _same)(x))
                           for n, f, x in zip(names, fields, v, strict=True)})
    return None, None


def _same(value: Any) -> Any:
    return value


def _type_json(kind: SqlType) -> Any:
    return [kind.name, list(kind.arguments), [_type_json(c) for c in kind.children], list(kind.field_names)]


def _type_from(data: Any) -> SqlType:
    name, arguments, children, field_names = data
    return SqlType(name, tuple(arguments), tuple(_type_from(c) for c in children), tuple(field_names))


def encode_result(columns: Sequence[Column], rows: Sequence[Row]) -> bytes:
    encoders = [_converters(c.type)[0] for c in columns]
    active = [(i, e) for i, e in enumerate(encoders) if e is not None]
    out_rows: list[list[Any]] = []
    for row in rows:
        values = list(row)
        for index, encode in active:
            if values[index] is not None:
                values[index] = encode(values[index])
        out_rows.append(values)
    document = {"format": FORMAT, "columns": [[c.name, _type_json(c.type)] for c in columns], "rows": out_rows}
    return zlib.compress(json.dumps(document, separators=(",", ":"), allow_nan=False).encode(), level=1)


def decode_result(blob: bytes) -> tuple[tuple[Column, ...], list[Row]]:
    document = json.loads(zlib.decompress(blob))
    if document.get("format") != FORMAT:
        raise ValueError("unknown cache entry format")
    columns = tuple(Column(name, _type_from(kind)) for name, kind in document["columns"])
    decoders = [_converters(c.type)[1] for c in columns]
    active = [(i, d) for i, d in enumerate(decoders) if d is not None]
    rows: list[Row] = []
    for values in document["rows"]:
        for index, decode in active:
            if values[index] is not None:
                values[index] = decode(values[index])
        rows.append(tuple(values))
    return columns, rows
