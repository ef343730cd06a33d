"""PostgreSQL types -> the Trino types clients see, and the value conversions that go with them.

Two sources name a PostgreSQL type: the catalog (`format_type(atttypid, atttypmod)`, with modifiers:
`numeric(15,2)`, `character varying(25)`, `timestamp(3) with time zone`, `integer[]`) and a prepared
statement's result columns (asyncpg's type name: `numeric`, `_int4`, without modifiers, which asyncpg does
not expose). Both go through `to_sql_type`; a type with no Trino counterpart is shown as varchar and its
values as PostgreSQL's text for them, never dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gateway import types as t

#: precision and scale shown for `numeric` without a declared precision (Trino has no unbounded decimal)
UNBOUNDED_NUMERIC = t.decimal(38, 18)

Converter = Callable[[Any], Any] | None

_SIMPLE: dict[str, t.SqlType] = {
    "smallint": t.SMALLINT, "int2": t.SMALLINT,
    "integer": t.INTEGER, "int4": t.INTEGER, "int": t.INTEGER,
    "bigint": t.BIGINT, "int8": t.BIGINT, "oid": t.BIGINT,
    "real": t.REAL, "float4": t.REAL,
    "double precision": t.DOUBLE, "float8": t.DOUBLE,
    "boolean": t.BOOLEAN, "bool": t.BOOLEAN,
    "text": t.VARCHAR, "name": t.VARCHAR, "citext": t.VARCHAR,
    "date": t.DATE,
    "bytea": t.VARBINARY,
    "uuid": t.UUID,
    "json": t.JSON, "jsonb": t.JSON,
    "interval": t.INTERVAL_DAY_TO_SECOND,
}
# asyncpg's internal names of types whose catalog name has modifiers
_RESULT_ALIASES = {"varchar": "character varying", "bpchar": "character", "timestamp": "timestamp without time zone",
                   "timestamptz": "timestamp with time zone", "time": "time without time zone",
                   "timetz": "time with time zone"}
_MODIFIED = re.compile(r"^(?P<base>[a-z ]+?)(?:\((?P<args>[\d, ]+)\))?(?P<zone> with(?:out)? time zone)?$")


def to_sql_type(pg_type: str) -> t.SqlType:
    """`format_type` text or an asyncpg type name -> Trino type."""
    text = pg_type.strip().lower()
    if text.endswith("[]"):
        return t.array(to_sql_type(text[:-2]))
    if text.startswith("_"):  # asyncpg names an array type by its element's name with a leading underscore
        return t.array(to_sql_type(text[1:]))
    text = _RESULT_ALIASES.get(text, text)
    if text in _SIMPLE:
        return _SIMPLE[text]
    match = _MODIFIED.match(text)
    if match is None:
        return t.VARCHAR
    base, zone = match["base"].strip(), match["zone"]
    args = [int(a) for a in match["args"].split(",")] if match["args"] else []
    if base == "numeric":
        return t.decimal(min(args[0], 38), min(args[1] if len(args) > 1 else 0, 38)) if args else UNBOUNDED_NUMERIC
    if base == "character varying":
        return t.varchar(args[0]) if args else t.VARCHAR
    if base == "character":
        return t.SqlType("char", (args[0] if args else 1,))
    if base in ("timestamp", "time"):
        precision = args[0] if args else 6
        kind = t.timestamp if base == "timestamp" else t.time
        return kind(precision, with_time_zone=zone == " with time zone")
    return t.VARCHAR


def converter(kind: t.SqlType, pg_type: str) -> Converter:
    """How asyncpg's Python value of a `pg_type` column becomes the value the Trino encoder expects for
    `kind`; None where it already is."""
    if kind.name == "array":
        element = converter(kind.children[0], pg_type.lstrip("_").removesuffix("[]"))
        if element is None:
            return None
        return lambda v: None if v is None else [element(x) for x in v]
    if kind == t.JSON:
        # asyncpg hands json/jsonb over as their text; Trino's json values are that text, normalised.
        return lambda v: None if v is None else json.dumps(json.loads(v), separators=(",", ":"), ensure_ascii=False)
    if kind == t.UUID:
        return lambda v: None if v is None else str(v)
    if kind == t.VARCHAR:
        return lambda v: v if v is None or isinstance(v, str) else str(v)  # types without a Trino counterpart
    if kind.name == "decimal":
        return lambda v: v if v is None or isinstance(v, Decimal) else Decimal(v)
    return None


def result_decimal(values: list[Any]) -> t.SqlType:
    """The decimal type of a result column asyncpg reports as bare `numeric`: the largest scale in `values`
    (the first batch), so computed columns (sum, avg) show their digits."""
    scale = 0
    for value in values:
        if isinstance(value, Decimal) and value.is_finite():
            exponent = value.as_tuple().exponent
            if isinstance(exponent, int):
                scale = max(scale, -exponent)
    return t.decimal(38, min(scale, 38))
