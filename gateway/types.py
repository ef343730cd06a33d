"""The gateway's column types, named as Trino names them.

Clients speak Trino SQL, so Trino's type system is the gateway's lingua franca: backends translate their
own types into `SqlType` (see each backend), frontends render it (`display()` is the text Trino shows in
DESCRIBE and information_schema; the Trino frontend also builds typeSignature from it).
"""

from __future__ import annotations

from dataclasses import dataclass

# Types whose argument list is a set of numbers (precision, scale, length).
NUMERIC_ARGUMENT_TYPES = frozenset({"varchar", "char", "decimal", "timestamp", "time", "timestamp with time zone",
                                    "time with time zone", "varbinary"})

UNBOUNDED_VARCHAR = 2147483647


@dataclass(frozen=True, slots=True)
class SqlType:
    """A Trino type: `name` plus numeric arguments (varchar(25), decimal(15,2), timestamp(3)) or child
    types (array, map, row). Row fields carry names in `field_names` ("" for an anonymous field, as in
    ROW(1, 'a'): Trino shows `row(integer, varchar(1))`)."""

    name: str
    arguments: tuple[int, ...] = ()
    children: tuple[SqlType, ...] = ()
    field_names: tuple[str, ...] = ()

    def display(self) -> str:
        if self.name == "array":
            return f"array({self.children[0].display()})"
        if self.name == "map":
            return f"map({self.children[0].display()}, {self.children[1].display()})"
        if self.name == "row":
            fields = ", ".join(f'"{n}" {t.display()}' if n else t.display()
                               for n, t in zip(self.field_names, self.children, strict=True))
            return f"row({fields})"
        if self.name == "varchar" and self.arguments == (UNBOUNDED_VARCHAR,):
            return "varchar"
        if self.name in ("timestamp with time zone", "time with time zone"):
            base = self.name.split(" ", 1)[0]
            return f"{base}({self.arguments[0]}) with time zone"
        if self.arguments:
            return f"{self.name}({','.join(str(a) for a in self.arguments)})"
        return self.name

    def __str__(self) -> str:
        return self.display()


def varchar(length: int = UNBOUNDED_VARCHAR) -> SqlType:
    return SqlType("varchar", (length,))


def decimal(precision: int, scale: int) -> SqlType:
    return SqlType("decimal", (precision, scale))


def timestamp(precision: int, *, with_time_zone: bool = False) -> SqlType:
    return SqlType("timestamp with time zone" if with_time_zone else "timestamp", (precision,))


def time(precision: int, *, with_time_zone: bool = False) -> SqlType:
    return SqlType("time with time zone" if with_time_zone else "time", (precision,))


def array(element: SqlType) -> SqlType:
    return SqlType("array", children=(element,))


def map_of(key: SqlType, value: SqlType) -> SqlType:
    return SqlType("map", children=(key, value))


def row(fields: list[tuple[str, SqlType]]) -> SqlType:
    return SqlType("row", children=tuple(t for _, t in fields), field_names=tuple(n for n, _ in fields))


BOOLEAN = SqlType("boolean")
TINYINT = SqlType("tinyint")
SMALLINT = SqlType("smallint")
INTEGER = SqlType("integer")
BIGINT = SqlType("bigint")
REAL = SqlType("real")
DOUBLE = SqlType("double")
VARCHAR = varchar()
VARBINARY = SqlType("varbinary")
DATE = SqlType("date")
UUID = SqlType("uuid")
JSON = SqlType("json")
INTERVAL_DAY_TO_SECOND = SqlType("interval day to second")
INTERVAL_YEAR_TO_MONTH = SqlType("interval year to month")
UNKNOWN = SqlType("unknown")
