"""Snowflake types -> the Trino types clients see, and the value conversions that go with them.

Two sources name a Snowflake type: INFORMATION_SCHEMA.COLUMNS (`DATA_TYPE` NUMBER, TEXT, TIMESTAMP_NTZ, ...
with NUMERIC_PRECISION/SCALE, CHARACTER_MAXIMUM_LENGTH, DATETIME_PRECISION) and a result's metadata (the
connector's `ResultMetadata.type_code`, named by `snowflake.connector.constants.FIELD_ID_TO_NAME`: FIXED,
REAL, TEXT, ...). Both go through `to_sql_type(name, precision, scale, length)`.

- NUMBER(p, 0) with p <= 18 is bigint (every value fits; COUNT is NUMBER(18,0)); other NUMBERs are decimal(p, s).
- TIME and TIMESTAMP keep their precision up to 6: the connector hands over Python values, which hold
  microseconds; a TIMESTAMP(9) column would otherwise promise digits that are never sent.
- VARIANT, OBJECT and ARRAY are Trino json; Snowflake sends their JSON text indented, so values are
  re-serialised compactly (the text Trino's json values have).
- Anything else (GEOGRAPHY, GEOMETRY, VECTOR, ...) is varchar holding Snowflake's text for the value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gateway import types as t

Converter = Callable[[Any], Any] | None

#: Snowflake's TEXT length when none is declared (VARCHAR = VARCHAR(16777216)): shown as unbounded varchar
MAX_TEXT_LENGTH = 16777216
PYTHON_TIME_PRECISION = 6
_BIGINT_DIGITS = 18

_ALIASES = {"FIXED": "NUMBER", "DECIMAL": "NUMBER", "NUMERIC": "NUMBER", "REAL": "FLOAT", "DOUBLE": "FLOAT",
            "DOUBLE PRECISION": "FLOAT", "FLOAT4": "FLOAT", "FLOAT8": "FLOAT", "VARCHAR": "TEXT", "STRING": "TEXT",
            "CHAR": "TEXT", "CHARACTER": "TEXT", "VARBINARY": "BINARY", "DATETIME": "TIMESTAMP_NTZ",
            "TIMESTAMP": "TIMESTAMP_NTZ", "INT": "NUMBER", "INTEGER": "NUMBER", "BIGINT": "NUMBER"}
_JSON_TYPES = frozenset({"VARIANT", "OBJECT", "ARRAY"})


def to_sql_type(name: str, precision: int | None = None, scale: int | None = None,
                length: int | None = None) -> t.SqlType:
    """A Snowflake type name (catalog or result metadata) and its modifiers -> Trino type."""
    kind = _ALIASES.get(name.strip().upper(), name.strip().upper())
    if kind == "NUMBER":
        p = precision if precision is not None else 38
        s = scale or 0
        if s == 0 and p <= _BIGINT_DIGITS:
            return t.BIGINT
        return t.decimal(min(p, 38), min(s, 38))
    if kind == "FLOAT":
        return t.DOUBLE
    if kind == "BOOLEAN":
        return t.BOOLEAN
    if kind == "DATE":
        return t.DATE
    if kind == "TEXT":
        return t.varchar(length) if length is not None and 0 < length < MAX_TEXT_LENGTH else t.VARCHAR
    if kind == "BINARY":
        return t.VARBINARY
    if kind in ("TIME", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ"):
        digits = min(scale if scale is not None else 9, PYTHON_TIME_PRECISION)
        if kind == "TIME":
            return t.time(digits)
        return t.timestamp(digits, with_time_zone=kind != "TIMESTAMP_NTZ")
    if kind in _JSON_TYPES:
        return t.JSON
    return t.VARCHAR


def converter(kind: t.SqlType) -> Converter:
    """How the connector's Python value for a column of Trino type `kind` becomes the value the Trino encoder
    expects; None where it already is."""
    if kind == t.JSON:
        return _compact_json
    if kind == t.VARBINARY:
        return lambda v: v if v is None or isinstance(v, bytes) else bytes(v)
    if kind == t.BIGINT:
        return lambda v: v if v is None or isinstance(v, int) else int(v)
    if kind.name == "decimal" and kind.arguments[1:] == (0,):
        # NUMBER(p,0) is also Snowflake's integer: ints, so a column Trino types as an integer is one
        return lambda v: v if v is None or isinstance(v, int) else int(v)
    if kind.name == "decimal":
        return lambda v: v if v is None or isinstance(v, Decimal) else Decimal(str(v))
    if kind.name == "varchar":
        return lambda v: v if v is None or isinstance(v, str) else str(v)
    return None


def _compact_json(value: Any) -> Any:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return text  # a VARIANT holding text that is not JSON: shown as Snowflake sent it
