"""The gateway's (Trino) column types as PostgreSQL names them: one table for the PostgreSQL-wire frontend's
encoder (RowDescription type OIDs and modifiers) and for the emulated pg_catalog (pg_type, pg_attribute,
format_type, information_schema.columns), so a client never sees two answers for one column.

OIDs are PostgreSQL's own builtin OIDs (src/include/catalog/pg_type.dat): clients hard-code them (pgJDBC's
Oid class, psycopg's and asyncpg's builtin type maps), so they must match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gateway.types import UNBOUNDED_VARCHAR, SqlType

VARHDRSZ = 4  # PostgreSQL stores typmods of varchar/numeric with this header size added
MAX_TYPMOD = 2**31 - 1
MAX_OCTET_LENGTH = 1073741824  # information_schema: a character column's octet length is capped at 1 GB


@dataclass(frozen=True, slots=True)
class PgBuiltinType:
    """One row of pg_type for a builtin type."""

    oid: int
    typname: str
    typlen: int  # bytes; -1 variable length
    category: str  # typcategory: B boolean, N numeric, S string, D date/time, U user, A array, ...
    array_oid: int  # typarray: the OID of `_typname`
    sql_name: str  # what format_type() says without a modifier
    element_oid: int = 0  # typelem, for arrays
    by_value: bool = False
    align: str = "i"


def _base(oid: int, name: str, length: int, category: str, array: int, sql_name: str, *, by_value: bool = False,
          align: str = "i") -> PgBuiltinType:
    return PgBuiltinType(oid, name, length, category, array, sql_name, by_value=by_value, align=align)


BASE_TYPES: tuple[PgBuiltinType, ...] = (
    _base(16, "bool", 1, "B", 1000, "boolean", by_value=True, align="c"),
    _base(17, "bytea", -1, "U", 1001, "bytea"),
    _base(18, "char", 1, "Z", 1002, '"char"', by_value=True, align="c"),
    _base(19, "name", 64, "S", 1003, "name", align="c"),
    _base(20, "int8", 8, "N", 1016, "bigint", by_value=True, align="d"),
    _base(21, "int2", 2, "N", 1005, "smallint", by_value=True, align="s"),
    _base(23, "int4", 4, "N", 1007, "integer", by_value=True),
    _base(24, "regproc", 4, "N", 1008, "regproc", by_value=True),
    _base(25, "text", -1, "S", 1009, "text"),
    _base(26, "oid", 4, "N", 1028, "oid", by_value=True),
    _base(114, "json", -1, "U", 199, "json"),
    _base(700, "float4", 4, "N", 1021, "real", by_value=True),
    _base(701, "float8", 8, "N", 1022, "double precision", by_value=True, align="d"),
    _base(705, "unknown", -2, "X", 0, "unknown", align="c"),
    _base(1042, "bpchar", -1, "S", 1014, "character"),
    _base(1043, "varchar", -1, "S", 1015, "character varying"),
    _base(1082, "date", 4, "D", 1182, "date", by_value=True),
    _base(1083, "time", 8, "D", 1183, "time without time zone", by_value=True, align="d"),
    _base(1114, "timestamp", 8, "D", 1115, "timestamp without time zone", by_value=True, align="d"),
    _base(1184, "timestamptz", 8, "D", 1185, "timestamp with time zone", by_value=True, align="d"),
    _base(1186, "interval", 16, "T", 1187, "interval", align="d"),
    _base(1266, "timetz", 12, "D", 1270, "time with time zone", align="d"),
    _base(1700, "numeric", -1, "N", 1231, "numeric"),
    _base(2205, "regclass", 4, "N", 2210, "regclass", by_value=True),
    _base(2206, "regtype", 4, "N", 2211, "regtype", by_value=True),
    _base(2950, "uuid", 16, "U", 2951, "uuid", align="c"),
    _base(3802, "jsonb", -1, "U", 3807, "jsonb"),
    _base(4089, "regnamespace", 4, "N", 4090, "regnamespace", by_value=True),
)


def _arrays(bases: tuple[PgBuiltinType, ...]) -> tuple[PgBuiltinType, ...]:
    return tuple(PgBuiltinType(b.array_oid, f"_{b.typname}", -1, "A", 0, f"{b.sql_name}[]", element_oid=b.oid,
                               align="d" if b.align == "d" else "i")
                 for b in bases if b.array_oid)


BUILTIN_TYPES: tuple[PgBuiltinType, ...] = (*BASE_TYPES, *_arrays(BASE_TYPES))
BY_OID: dict[int, PgBuiltinType] = {t.oid: t for t in BUILTIN_TYPES}
BY_NAME: dict[str, PgBuiltinType] = {t.typname: t for t in BUILTIN_TYPES}
# what `'...'::regtype` accepts besides typname: the SQL spellings format_type prints
BY_SQL_NAME: dict[str, PgBuiltinType] = {t.sql_name: t for t in BUILTIN_TYPES}

# Trino type name -> PostgreSQL typname (types with arguments handled in pg_type_for). Every other type
# (array, map, row, json, interval, time with time zone, ...) is sent as `text` in its PostgreSQL text
# spelling, which every client decodes: the wire frontend's encoder does so, and the catalog must describe a
# column exactly as RowDescription does.
_SIMPLE: dict[str, str] = {
    "boolean": "bool", "tinyint": "int2", "smallint": "int2", "integer": "int4", "bigint": "int8",
    "real": "float4", "double": "float8", "varbinary": "bytea", "date": "date", "uuid": "uuid",
}  # fmt: skip


class PgType(NamedTuple):
    """How one column type appears to a PostgreSQL client (a tuple: `oid, typname, typlen, typmod = ...`)."""

    oid: int
    typname: str
    typlen: int
    typmod: int  # atttypmod / RowDescription's type modifier; -1 none


def pg_type_for(kind: SqlType) -> PgType:
    """The PostgreSQL type a column of gateway type `kind` is described and sent as."""
    name = kind.name
    if name == "varchar":
        length = kind.arguments[0] if kind.arguments else UNBOUNDED_VARCHAR
        return _typed("varchar", _length_typmod(length))
    if name == "char":
        return _typed("bpchar", _length_typmod(kind.arguments[0] if kind.arguments else 1))
    if name == "decimal":
        precision, scale = kind.arguments if len(kind.arguments) == 2 else (38, 0)
        return _typed("numeric", ((precision << 16) | scale) + VARHDRSZ)
    if name in ("timestamp", "timestamp with time zone", "time"):
        typname = {"timestamp": "timestamp", "timestamp with time zone": "timestamptz", "time": "time"}[name]
        # PostgreSQL keeps at most microseconds; finer Trino precisions are sent rounded to 6.
        precision = min(kind.arguments[0], 6) if kind.arguments else -1
        return _typed(typname, precision)
    return _typed(_SIMPLE.get(name, "text"), -1)


def _length_typmod(length: int) -> int:
    """A length's typmod; -1 (no limit) where it would not fit PostgreSQL's int4 typmod."""
    return length + VARHDRSZ if length + VARHDRSZ <= MAX_TYPMOD else -1


def _typed(typname: str, typmod: int) -> PgType:
    base = BY_NAME[typname]
    return PgType(base.oid, base.typname, base.typlen, typmod)


def format_type(oid: int, typmod: int | None) -> str | None:
    """PostgreSQL's format_type(oid, typmod) for the builtin types; None for an unknown OID."""
    base = BY_OID.get(oid)
    if base is None:
        return None
    if base.element_oid:
        element = format_type(base.element_oid, typmod)
        return f"{element}[]" if element is not None else None
    if typmod is None or typmod < 0:
        return base.sql_name
    if base.typname in ("varchar", "bpchar") and typmod >= VARHDRSZ:
        return f"{base.sql_name}({typmod - VARHDRSZ})"
    if base.typname == "numeric" and typmod >= VARHDRSZ:
        value = typmod - VARHDRSZ
        return f"numeric({value >> 16},{value & 0xFFFF})"
    if base.typname in ("timestamp", "timestamptz", "time", "timetz"):
        head, _, zone = base.sql_name.partition(" ")
        return f"{head}({typmod}) {zone}"
    return base.sql_name


def numeric_facts(kind: SqlType) -> tuple[int | None, int | None, int | None]:
    """(numeric_precision, numeric_precision_radix, numeric_scale) as information_schema.columns gives them."""
    bits = {"tinyint": 16, "smallint": 16, "integer": 32, "bigint": 64}
    if kind.name in bits:
        return bits[kind.name], 2, 0
    if kind.name == "real":
        return 24, 2, None
    if kind.name == "double":
        return 53, 2, None
    if kind.name == "decimal" and len(kind.arguments) == 2:
        return kind.arguments[0], 10, kind.arguments[1]
    return None, None, None
